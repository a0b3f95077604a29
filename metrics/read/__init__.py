"""Readers of the Redis layout: summed buckets, the waiting index, won-deal records."""
