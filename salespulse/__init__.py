"""SalesPulse: real-time sales KPIs from CRM webhooks.

Data flows through the top-level packages in order: ``handlers`` (ingest → the
``crm.events`` topic) → ``streams`` (the topic → the Redis KPI store) → ``metrics``
(the store → Prometheus, the JSON API, the wall). This package holds what sits below
and above them: ``core`` (the kernel they share), ``app`` (composition), ``dev``
(tooling) and ``cli``. README, "Where things are", has the tree and the layer rule.
"""

__version__ = "0.1.0"
