"""SalesPulse: real-time sales KPIs from CRM webhooks.

Data flows through the top-level packages in order: ``handlers`` (HTTP ingest) →
``streams`` (Kafka → KPI fold → Redis) → ``metrics`` (Prometheus exposition).
This package holds what they share: settings, the canonical event, Redis key layout,
the embedded broker/Redis helpers and the command line.
"""

__version__ = "0.1.0"
