"""The kernel the three sides share: the canonical event, errors, settings, tenants, access
tokens, topics, pipeline self-metrics and the KPI catalogue with its Redis layout.

It imports nothing else of ours (tests/unit/test_layering.py), so any side can use it.
"""
