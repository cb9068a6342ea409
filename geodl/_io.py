"""Atomic file writes (temporary file in the same folder + ``os.replace``), used by every writer.

A reader never sees a half-written checkpoint, cache or results file: the data goes to
``<name>.tmp<pid>`` beside the target and is renamed over it in one step.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

__all__ = ["atomic_write", "atomic_write_text", "atomic_write_bytes", "atomic_torch_save"]


def atomic_write(path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` and rename the result onto ``path``; the parent folder is created.

    On any error the temporary file is removed and the old ``path`` (if any) is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink()
        except FileNotFoundError:
            pass
        raise
    return path


def atomic_write_text(path, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding=encoding))


def atomic_write_bytes(path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def atomic_torch_save(obj, path) -> Path:
    """``torch.save(obj, path)`` atomically (load such files with ``torch.load(weights_only=True)``)."""
    import torch

    return atomic_write(path, lambda tmp: torch.save(obj, tmp))
