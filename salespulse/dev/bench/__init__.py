"""`salespulse bench`: the throughput and latency table, SalesPulse against naive faust."""
