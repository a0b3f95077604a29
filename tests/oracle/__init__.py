"""Independent batch oracle for docs/kpi-semantics.md (written from the spec alone)."""
