"""Exposition: Prometheus metrics of the pipeline and of the KPIs kept in Redis."""
