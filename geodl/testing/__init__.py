"""Equivariance checks (filled in by the foundation work)."""
