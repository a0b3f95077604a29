"""Prometheus collectors: read Redis at scrape time into an injected registry."""
