"""Derived values (ratios, averages, percentiles) presented from the parts read from Redis."""
