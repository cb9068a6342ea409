"""The result of an equivariance check: one row per output and group-element type, and its table."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

__all__ = ["EquivarianceRow", "EquivarianceReport", "ModuleReport"]


@dataclass(frozen=True)
class EquivarianceRow:
    """Worst error of one output over the group elements of one type.

    Attributes
    ----------
    output : str
        The output's name: ``"out"`` for a single output, ``"out[i]"`` for a tuple, the key for a dict.
    kind : str
        How the group acts on that output (``"scalar"``, ``"node:vectors"``, ...).
    element : str
        The group elements' label: ``"identity"``, ``"haar"``, ``"reflection"``, ``"translation"``,
        ``"perm"``, ``"scale"``, ``"finite:icosahedral"``, ...
    n : int
        How many elements of that type were tried.
    max_error : float
        ``max |fn(g·x) - g·fn(x)| / max(|fn(x)|, |g·fn(x)|)`` over those elements (``inf`` when the
        output's shape changed or held NaN/inf).
    max_abs_error : float
        The same without the division.
    rtol, atol : float
        The tolerance: an element passes when ``abs_error <= atol + rtol * scale``.
    passed : bool
        Whether every element of that type passed.
    issue : str
        Why the error is ``inf``, when it is: ``"nan"`` (NaN/inf in an output) or ``"shape"`` (the
        output for ``g·x`` has another shape than ``g·fn(x)``); ``""`` otherwise.
    message : str
        A sentence saying what the issue was (which output, which element), ``""`` without one.

    ``row.status`` is what the table shows: ``"ok"``, ``"FAIL"``, ``"NaN"`` or ``"SHAPE"``.
    """

    output: str
    kind: str
    element: str
    n: int
    max_error: float
    max_abs_error: float
    rtol: float
    atol: float
    passed: bool
    issue: str = ""
    message: str = ""

    @property
    def status(self) -> str:
        if self.passed:
            return "ok"
        return {"nan": "NaN", "shape": "SHAPE"}.get(self.issue, "FAIL")


# float32's rounding, seen relative to the output in a float64 run: ~1e-7 (a few ulps of float32
# up to a few hundred); far above float64's ~1e-16 and far below a genuine symmetry error.
_F32_SIZED = (1e-10, 1e-4)


def _fmt(x: float) -> str:
    return f"{x:.2e}" if math.isfinite(x) else str(x)


@dataclass(frozen=True)
class EquivarianceReport:
    """What :func:`~geodl.testing.equivariance_error` found.

    Attributes
    ----------
    rows : list of EquivarianceRow
        One row per output and element type, in the order they were first met.
    group : str
        The group's name.
    dtype : str
        The dtype the function ran in (it chose the default tolerance).
    notes : tuple of str
        Extra hints for the reader (e.g. float32 tensors found in a model checked in float64),
        shown under the table with the automatic ones (see ``hints``).

    ``report.passed`` is true when every row passed; ``report.max_error`` is the largest relative
    error; ``str(report)`` is a table that marks the failing rows.

    Examples
    --------
    >>> from geodl.testing import EquivarianceReport, EquivarianceRow
    >>> row = EquivarianceRow("out", "scalar", "haar", 4, 3e-17, 1e-16, 1e-10, 0.0, True)
    >>> report = EquivarianceReport([row], group="SO3", dtype="float64")
    >>> report.passed, report.max_error
    (True, 3e-17)
    """

    rows: list = field(default_factory=list)
    group: str = ""
    dtype: str = ""
    notes: tuple = ()

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.rows)

    @property
    def hints(self) -> list:
        """What the failures suggest, as sentences: float32-sized errors in a float64 run (a part of
        the model computing in float32), plus ``notes``."""
        out = []
        bad = [r.max_error for r in self.failures if not r.issue]
        if self.dtype == "float64" and bad and all(_F32_SIZED[0] <= e <= _F32_SIZED[1] for e in bad):
            out.append(f"hint: the errors (up to {_fmt(max(bad))} relative) are float32-sized in a float64 run: "
                       "part of the model probably computes in float32 (a float32 buffer, constant or plain "
                       "tensor attribute that .to(torch.float64) does not convert, or an e3nn module built "
                       "in float32 and converted with .double(); build it under "
                       "torch.set_default_dtype(torch.float64))")
        return out + [n for n in self.notes if self.failures]

    @property
    def max_error(self) -> float:
        return max((r.max_error for r in self.rows), default=0.0)

    @property
    def failures(self) -> list:
        """The rows that failed."""
        return [r for r in self.rows if not r.passed]

    def __str__(self) -> str:
        rtols = sorted({r.rtol for r in self.rows})
        atols = sorted({r.atol for r in self.rows})
        tol_txt = ", ".join(f"rtol {_fmt(rt)}" for rt in rtols)
        if len(atols) > 1:  # the default: a floor from eps and the scales of each output and input
            tol_txt += f", atol {_fmt(atols[0])} to {_fmt(atols[-1])}"
        elif atols and atols[0]:
            tol_txt += f", atol {_fmt(atols[0])}"
        head = ["output", "kind", "element", "n", "max rel. error", "max abs. error", "status"]
        body = [[r.output, r.kind, r.element, str(r.n), _fmt(r.max_error), _fmt(r.max_abs_error),
                 r.status] for r in self.rows]
        widths = [max(len(line[i]) for line in [head] + body) for i in range(len(head))]
        lines = [f"equivariance check: group {self.group}, dtype {self.dtype}, {tol_txt or 'no outputs'}"]
        for line in [head, ["-" * w for w in widths]] + body:
            lines.append("  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip())
        n_fail = len(self.failures)
        lines.append("PASSED" if not n_fail else f"FAILED: {n_fail} of {len(self.rows)} rows above tolerance")
        lines += [f"{r.output}, {r.element}: {r.message}" for r in self.failures if r.message]
        lines += self.hints
        return "\n".join(lines)


@dataclass(frozen=True)
class ModuleReport:
    """What :func:`~geodl.testing.check_module` found: one status per item of the battery.

    Attributes
    ----------
    items : dict of str to (str, str)
        Item name -> ``(status, detail)`` in the order run; status is ``"passed"``, ``"failed"`` or
        ``"skipped"``; the detail says what was compared, why it failed or why it was skipped (the
        equivariance item's detail is the :class:`EquivarianceReport` table).
    module : str
        The module's class name.
    group : str
        The group tested.
    dtype : str
        The dtype the checks ran in.

    ``report.passed`` is true when no item failed; ``report.failed`` lists the failed items;
    ``str(report)`` is a table with one row per item, followed by the details of failed items.

    Examples
    --------
    >>> from geodl.testing import ModuleReport
    >>> report = ModuleReport({"batching": ("passed", "2 graphs"), "compile": ("failed", "graph break")})
    >>> report.passed, report.failed
    (False, ['compile'])
    """

    items: dict = field(default_factory=dict)
    module: str = ""
    group: str = ""
    dtype: str = ""

    @property
    def passed(self) -> bool:
        return not self.failed

    @property
    def failed(self) -> list:
        return [name for name, (status, _) in self.items.items() if status == "failed"]

    def __str__(self) -> str:
        head = ["item", "status", "detail"]
        body = []
        for name, (status, detail) in self.items.items():
            first = detail.splitlines()[0] if detail else ""
            body.append([name, "FAIL" if status == "failed" else status, first])
        widths = [max(len(line[i]) for line in [head] + body) for i in range(2)]
        lines = [f"check_module: {self.module or 'module'}, group {self.group or '?'}, dtype {self.dtype or '?'}"]
        for line in [head, ["-" * w for w in widths] + ["-" * 6]] + body:
            lines.append("  ".join([c.ljust(w) for c, w in zip(line[:2], widths)] + [line[2]]).rstrip())
        lines.append("PASSED" if self.passed else f"FAILED: {', '.join(self.failed)}")
        for name in self.failed:
            detail = self.items[name][1]
            if "\n" in detail:
                lines += ["", f"{name}:", detail]
        return "\n".join(lines)
