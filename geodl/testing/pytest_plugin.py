"""pytest plugin for geodl (registered through the ``pytest11`` entry point)."""
