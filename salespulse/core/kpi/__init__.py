"""The KPI catalogue, bucket naming and the Redis layout: the worker writes, the read side reads."""
