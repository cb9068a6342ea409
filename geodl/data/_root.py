"""Where geodl keeps generated and cached data: ``$GEODL_DATA``, a root set in code, or the user cache.

The root is never derived from the package's own location (a normal install lives in
``site-packages``, which may be read-only and is shared by every environment user).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["default_root", "set_root"]

_ROOT: Path | None = None


def set_root(path) -> None:
    """Set the data root for this process (``None`` clears it); ``$GEODL_DATA`` still wins.

    Examples
    --------
    >>> import os, tempfile
    >>> env = os.environ.pop("GEODL_DATA", None)
    >>> d = tempfile.mkdtemp()
    >>> set_root(d); default_root() == Path(d)
    True
    >>> set_root(None)
    >>> if env is not None: os.environ["GEODL_DATA"] = env
    """
    global _ROOT
    if path is None:
        _ROOT = None
        return
    from geodl._checks import check_path

    _ROOT = check_path("path", path).expanduser()


def resolve_root(root, name: str = "root") -> Path:
    """``root`` as a ``Path`` (``None``: :func:`default_root`); ``TypeError`` naming ``name`` unless
    it is a ``str`` or ``os.PathLike``.

    Examples
    --------
    >>> resolve_root("/tmp/x")
    PosixPath('/tmp/x')
    """
    from geodl._checks import check_path

    return default_root() if root is None else check_path(name, root)


def default_root() -> Path:
    """The data root, decided on every call.

    1. ``$GEODL_DATA`` when set and non-empty;
    2. else the root given to :func:`set_root`;
    3. else the user cache: ``$XDG_CACHE_HOME/geodl`` when ``XDG_CACHE_HOME`` is set, otherwise
       ``~/.cache/geodl``.

    The folder is not created here (writers create what they write).

    Returns
    -------
    pathlib.Path

    Examples
    --------
    >>> import os
    >>> old = os.environ.get("GEODL_DATA")
    >>> os.environ["GEODL_DATA"] = "/data/geodl"
    >>> str(default_root())
    '/data/geodl'
    >>> _ = os.environ.pop("GEODL_DATA") if old is None else os.environ.update(GEODL_DATA=old)
    """
    env = os.environ.get("GEODL_DATA")
    if env:
        return Path(env).expanduser()
    if _ROOT is not None:
        return _ROOT
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "geodl"
