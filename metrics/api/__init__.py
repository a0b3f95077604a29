"""The JSON read API (GET /v1/kpis, /v1/waiting) and its read tokens."""
