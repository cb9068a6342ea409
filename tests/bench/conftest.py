"""Tests of this folder read the repository's data cache (``datasets/cache``) unless ``GEODL_DATA``
is set, as ``make test`` does; a bare ``pytest`` would otherwise build the land mask in ``~/.cache``."""

import os
from pathlib import Path

os.environ.setdefault("GEODL_DATA", str(Path(__file__).resolve().parents[2] / "datasets" / "cache"))
