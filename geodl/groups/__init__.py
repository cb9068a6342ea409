"""The group vocabulary (filled in by the foundation work)."""
