"""Ingest edge: HTTP in, canonical events out to Kafka, bad payloads to the dead-letter topic."""
