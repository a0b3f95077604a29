"""Stream processing: consume canonical events, fold them into KPI increments, apply to Redis."""
