"""Developer tooling apart from the serving path: the benchmark, dataset converters,
replay, soak and the Grafana dashboards generator."""
