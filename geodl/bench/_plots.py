"""Figures of a benchmark run: learning curves and sphere maps (matplotlib, optional).

Tasks write their JSON/CSV results first and draw afterwards through :func:`try_plot`, so a
missing matplotlib costs the figures (with a warning), never the results.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Callable, Iterable, Sequence

from geodl._checks import check_number, check_path
from geodl._io import atomic_write

__all__ = ["plot_curves", "plot_sphere_maps", "try_plot"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, paths: Sequence[Path], **kw) -> list[Path]:
    out = []
    for p in paths:
        out.append(atomic_write(p, lambda tmp: fig.savefig(tmp, format="png", **kw)))
    return out


def grouped_bars(ax, series, labels, *, rotation: float = 20) -> None:
    """Grouped bars on ``ax``: one group per entry of ``labels``, one coloured bar per series.

    ``series`` maps a legend name to one value per label (NaN leaves a gap); a light y grid is drawn.
    """
    series = dict(series)
    width = 0.8 / max(1, len(series))
    for j, (name, vals) in enumerate(series.items()):
        xs = [i + (j - (len(series) - 1) / 2) * width for i in range(len(labels))]
        ax.bar(xs, list(vals), width, label=name, color=f"C{j}")
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(list(labels), rotation=rotation, ha="right" if rotation else "center")
    ax.grid(True, axis="y", alpha=0.3)


def save_figure(fig, path, *, dpi: int = 110) -> Path:
    """``tight_layout``, write ``fig`` to ``path`` (PNG, atomically) and close it; returns the path."""
    fig.tight_layout()
    (out,) = _save(fig, [Path(path)], dpi=dpi)
    _pyplot().close(fig)
    return out


def try_plot(fn: Callable, *args, **kwargs):
    """``fn(*args, **kwargs)``, or a warning and None when matplotlib (or healpy) is missing.

    Examples
    --------
    >>> def needs_missing_package():
    ...     import not_a_package_here
    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as w:
    ...     warnings.simplefilter("always")
    ...     try_plot(needs_missing_package) is None, "figures skipped" in str(w[0].message)
    (True, True)
    """
    try:
        return fn(*args, **kwargs)
    except ImportError as exc:
        warnings.warn(f"figures skipped ({exc}); the results files were written. "
                      "pip install matplotlib (or geodl[bench]) to draw them", stacklevel=2)
        return None


def plot_curves(histories: dict[str, list[dict]], path,
                keys: Iterable[str] = ("train_loss", "val_loss")) -> Path:
    """Save learning curves (one line per run and key, log-scale y) as a PNG.

    Parameters
    ----------
    histories : dict
        ``{run name: TrainResult.history}``.
    path : str or pathlib.Path
        Output file (``.png``), written atomically.
    keys : iterable of str
        History keys to draw (solid for the first, dashed, dotted, ... for the next).

    Returns
    -------
    pathlib.Path
    """
    if not isinstance(histories, dict) or not histories:
        raise ValueError("histories: expected a non-empty dict {name: history}")
    for name, hist in histories.items():
        if not isinstance(hist, (list, tuple)) or not all(isinstance(h, dict) for h in hist):
            raise TypeError(f"histories: expected a list of dicts for {name!r}, got {type(hist).__name__}")
    if isinstance(keys, str) or not isinstance(keys, Iterable):
        raise TypeError(f"keys: expected an iterable of history keys (str), got {type(keys).__name__}")
    plt = _pyplot()
    keys = list(keys)
    if not keys or not all(isinstance(k, str) for k in keys):
        raise TypeError(f"keys: expected a non-empty iterable of str, got {keys!r:.60}")
    path = check_path("path", path)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    styles = ["-", "--", ":", "-."]
    for i, (name, hist) in enumerate(histories.items()):
        color = f"C{i}"
        for j, k in enumerate(keys):
            pts = [(h["epoch"], h[k]) for h in hist if k in h and h[k] is not None and h[k] > 0]
            if pts:
                ax.plot(*zip(*pts), styles[j % len(styles)], color=color, label=f"{name} {k}")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    (out,) = _save(fig, [Path(path)], dpi=120)
    plt.close(fig)
    return out


def plot_sphere_maps(panels: dict, paths: Sequence, *, cmap: str = "RdYlBu_r", vmax: float = 1.0,
                     colorbar: bool = True, unit: str = "") -> list[Path]:
    """One Mollweide panel per HEALPix map (RING order), healpy's projection, saved to ``paths``.

    Parameters
    ----------
    panels : dict
        ``{title: map array of 12 nside² values}``.
    paths : sequence of str or pathlib.Path
        The same figure is written (atomically) to each.
    cmap, vmax, colorbar, unit
        Colour map, upper end of the colour scale (lower end 0, so ``vmax > 0``), colour bar and
        its unit.
    """
    if not isinstance(panels, dict) or not panels:
        raise ValueError("panels: expected a non-empty dict {title: map}")
    check_number("vmax", vmax, positive=True)
    if isinstance(paths, (str, bytes)) or not isinstance(paths, Sequence):
        raise TypeError(f"paths: expected a sequence of paths, got {type(paths).__name__}")
    paths = [check_path("paths", p) for p in paths]
    for title, m in panels.items():
        npix = len(m) if hasattr(m, "__len__") else -1
        if npix < 12 or npix % 12 or int(round((npix // 12) ** 0.5)) ** 2 * 12 != npix:
            raise ValueError(f"panels: map {title!r} has {npix} values; a HEALPix map has 12 nside² values")
    plt = _pyplot()
    import healpy as hp

    panels = list(panels.items())
    cols = 3 if len(panels) > 4 else len(panels)
    rows = -(-len(panels) // cols)
    fig = plt.figure(figsize=(4.2 * cols, 3.0 * rows))
    for i, (name, m) in enumerate(panels):
        with warnings.catch_warnings():  # healpy's colormap handling warns on newer matplotlib
            warnings.simplefilter("ignore")
            hp.mollview(m, fig=fig.number, sub=(rows, cols, i + 1), title=name, cmap=cmap, min=0.0,
                        max=vmax, cbar=colorbar, notext=True, xsize=400, unit=unit)
    written = _save(fig, [Path(p) for p in paths], dpi=80)
    plt.close(fig)
    return written
