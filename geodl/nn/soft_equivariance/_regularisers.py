"""Soft-equivariance regularisers, automatic strength tuning and the symmetry report (Kim et al., ICML'23).

- :func:`projection_regulariser`: ``Σ_layers ½‖W − P_G W‖² + ½‖b − P_G b‖²`` over the layers of a model that
  declare representations (every module with an ``equivariance_penalty`` method, e.g.
  :class:`~geodl.nn.soft_equivariance.RepLinear`);
- :func:`mc_regulariser`: ``E_g mean‖f(g·x) − g·f(x)‖²`` for any model, with Haar-random ``g`` of the
  candidate group acting through :func:`geodl.groups.act` — the kinds and action code the checker
  :func:`geodl.testing.check_module` uses (no import of the test harness);
- :class:`StrengthTuner`: one strength ``λ_j`` per candidate group, kept as buffers of the model; every
  ``every`` epochs ``λ_j ← initial · (R_min / R_j)^power`` from the mean regulariser ``R_j`` of each
  group over the epoch. With ``start="largest"`` only the largest groups (those not contained in
  another candidate) are on before the first adjustment;
- :func:`symmetry_report`: per candidate group, the projection regulariser, the strength and the
  relative equivariance error ``‖f(g·x) − g·f(x)‖ / ‖f(x)‖`` of a trained model.

Why strengths go up for the true symmetry: for ``H ⊂ G`` the ``H``-equivariant maps contain the
``G``-equivariant ones, so ``R_H ≤ R_G`` for any weights; a model fitted to data with symmetry ``H``
drifts towards ``H``-equivariance, so ``R_H`` falls further below ``R_G`` and below the regulariser of
other groups of the same size (``O2x`` vs ``O2z``), and ``(R_min / R_j)^p`` ranks ``H`` first.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import torch
from torch import nn

from geodl._checks import check_choice, check_int, check_number, check_tensor
from geodl.groups import act, parse_kind
from geodl.nn.soft_equivariance._groups import CandidateGroup, candidate_group
from geodl.nn.soft_equivariance._reps import Rep

__all__ = ["projection_regulariser", "mc_regulariser", "StrengthTuner", "symmetry_report"]


def _candidate_groups(groups) -> list[CandidateGroup]:
    """The candidate groups of a non-empty sequence (errors name ``groups``)."""
    if isinstance(groups, (str, CandidateGroup)) or not isinstance(groups, Sequence) or not groups:
        raise ValueError(f"groups: expected a non-empty list of candidate group names, got {groups!r}")
    Gs = []
    for i, g in enumerate(groups):
        try:
            Gs.append(candidate_group(g))
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"groups[{i}]: {exc}") from None
    return Gs


def _penalised_layers(model) -> list[nn.Module]:
    # an RPPLinear holds a RepLinear (its equivariant path, flagged _rpp_inner): count the outer map only
    return [m for m in model.modules() if callable(getattr(m, "equivariance_penalty", None))
            and not getattr(m, "_rpp_inner", False)]


def projection_regulariser(model: nn.Module, group) -> torch.Tensor:
    """``Σ ½‖W − P_G W‖² + ½‖b − P_G b‖²`` over every layer of ``model`` with an ``equivariance_penalty``.

    Parameters
    ----------
    model : torch.nn.Module
        Must contain at least one layer with declared representations (``ValueError`` naming
        ``model`` otherwise).
    group : str or CandidateGroup
        A linear candidate group (``ValueError`` naming ``group`` for an unknown name or ``T3``).

    Returns
    -------
    Tensor, a scalar ≥ 0 in float64-accurate arithmetic, differentiable; finite or ``+inf`` (never
    NaN) for finite weights.

    Examples
    --------
    >>> import torch
    >>> from geodl.nn.soft_equivariance import RepMLP, projection_regulariser
    >>> _ = torch.manual_seed(0)
    >>> hard = RepMLP("2xvectors", "vectors", hidden="2xscalars+vectors", num_layers=1, group="O3",
    ...               path="equivariant").double()
    >>> float(projection_regulariser(hard, "O3")) < 1e-20
    True
    >>> free = RepMLP("2xvectors", "vectors", hidden="2xscalars+vectors", num_layers=1).double()
    >>> float(projection_regulariser(free, "O3")) > float(projection_regulariser(free, "O2z")) > 0
    True
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    G = candidate_group(group)
    if not G.linear:
        raise ValueError(f"group: {G.name!r} contains translations: no projector exists (use mc_regulariser)")
    layers = _penalised_layers(model)
    if not layers:
        raise ValueError("model: has no layers with declared representations (RepLinear, RPPLinear, ...); "
                         "use mc_regulariser for an arbitrary model")
    total = None
    for m in layers:
        p = m.equivariance_penalty(G).to(torch.float64)
        total = p if total is None else total + p
    return total


def _as_kind(name: str, kind) -> str:
    """A geodl kind string from a Rep, a Rep spec (tried first) or a geodl kind."""
    if isinstance(kind, Rep):
        return kind.kind
    if not isinstance(kind, str):
        raise TypeError(f"{name}: expected a kind string, a Rep or a Rep spec, got {type(kind).__name__}")
    try:  # a Rep spec first: "tensor2" as a Rep is a flat (..., 9) feature, as a geodl kind (..., 3, 3)
        return Rep(kind).kind
    except ValueError:
        pass
    try:
        return parse_kind(kind).kind
    except (ValueError, KeyError):
        raise ValueError(f"{name}: {kind!r} is neither a geodl kind (see geodl.groups.kind_table()) nor a "
                         "representation spec such as '5xscalars+5xpoints'") from None


def _io_kinds(model, x, rep_in, rep_out):
    """``(kinds of the inputs (dict or str), kind of the output)``, from the arguments or the model's reps."""
    rep_in = getattr(model, "rep_in", None) if rep_in is None else rep_in
    rep_out = getattr(model, "rep_out", None) if rep_out is None else rep_out
    if rep_in is None:
        raise ValueError("rep_in: the model has no rep_in attribute; pass the input representation or kinds")
    if rep_out is None:
        raise ValueError("rep_out: the model has no rep_out attribute; pass the output representation or kind")
    if isinstance(x, Mapping) or _is_pyg(x):
        if not isinstance(rep_in, Mapping):
            raise ValueError("rep_in: for dict or PyG Data inputs pass a dict {field: kind}")
        kin = {k: _as_kind(f"rep_in[{k!r}]", v) for k, v in rep_in.items()}
        missing = [k for k in kin if (k not in x if isinstance(x, Mapping) else getattr(x, k, None) is None)]
        if missing:
            raise ValueError(f"rep_in: fields {missing} are not in x")
    else:
        if isinstance(rep_in, Mapping):
            raise ValueError("rep_in: a dict of kinds needs dict or PyG Data inputs x")
        kin = _as_kind("rep_in", rep_in)
    return kin, _as_kind("rep_out", rep_out)


def _is_pyg(x) -> bool:
    # a Batch's class is made on the fly (DataBatch): look along the MRO, without importing PyG
    return hasattr(x, "to_dict") and any(c.__module__.startswith("torch_geometric") for c in type(x).__mro__)


def _act_inputs(x, kin, g):
    if isinstance(kin, str):
        return act(kin, g, x)
    if isinstance(x, Mapping):
        return {k: (act(kin[k], g, v) if k in kin else v) for k, v in x.items()}
    y = x.clone()
    for k, kind in kin.items():
        y[k] = act(kind, g, x[k])
    return y


def _call(model, x):
    return model(**x) if isinstance(x, Mapping) else model(x)


def _check_inputs(x):
    if isinstance(x, torch.Tensor):
        check_tensor("x", x, floating=True)
        if x.numel() and not torch.compiler.is_compiling() and not bool(torch.isfinite(x).all()):
            raise ValueError("x: expected finite inputs, got NaN or inf")
    elif not (isinstance(x, Mapping) or _is_pyg(x)):
        raise TypeError(f"x: expected a tensor, a dict of tensors or a PyG Data, got {type(x).__name__}")


def _generator(generator):
    if generator is None or isinstance(generator, torch.Generator):
        return generator
    if isinstance(generator, int) and not isinstance(generator, bool):
        return torch.Generator().manual_seed(check_int("generator", generator, min=0))
    raise TypeError(f"generator: expected a torch.Generator, an int seed or None, got {type(generator).__name__}")


def _residuals(model, x, G: CandidateGroup, kin, kout, n_samples, generator, dtype):
    """Yield ``(f(g·x) − g·f(x), g·f(x))`` for ``n_samples`` Haar-random ``g``."""
    fx = _call(model, x)
    if not isinstance(fx, torch.Tensor):
        raise TypeError(f"model: expected a tensor output, got {type(fx).__name__}")
    for _ in range(n_samples):
        g = G.sample(generator=generator, dtype=dtype)
        gfx = act(kout, g, fx)
        yield _call(model, _act_inputs(x, kin, g)) - gfx, gfx


def _float_dtype(x):
    if isinstance(x, torch.Tensor):
        return x.dtype
    vals = x.values() if isinstance(x, Mapping) else [v for _, v in x]
    for v in vals:
        if isinstance(v, torch.Tensor) and v.is_floating_point():
            return v.dtype
    return torch.get_default_dtype()


def mc_regulariser(model: nn.Module, x, group, *, rep_in=None, rep_out=None, n_samples: int = 1,
                   generator=None) -> torch.Tensor:
    """Monte-Carlo equivariance regulariser ``mean_g mean ‖f(g·x) − g·f(x)‖²`` (any model).

    Parameters
    ----------
    model : callable torch.nn.Module
        ``model(x)`` (or ``model(**x)`` for a dict, ``model(data)`` for PyG Data) returning a tensor.
    x : Tensor, dict of Tensors, or torch_geometric Data/Batch
        Data inputs (finite).
    group : str or CandidateGroup
        Any candidate group, translations included (``"SO3+T3"``).
    rep_in : Rep, str or dict, optional
        The input's representation or kind (``"5xscalars+5xpoints"``, ``"node:points"``), or for dict
        / PyG inputs ``{field: kind}`` (fields not listed are passed unchanged). Default:
        ``model.rep_in``.
    rep_out : Rep or str, optional
        The output's representation or kind. Default: ``model.rep_out``.
    n_samples : int
        Haar-random group elements averaged (1 to 10⁴).
    generator : torch.Generator or int, optional
        Source of the group elements.

    Returns
    -------
    Tensor, a scalar ≥ 0 in the output's dtype, differentiable in the model's parameters; ``+inf``
    rather than NaN when the outputs overflow.

    Examples
    --------
    >>> import torch
    >>> from geodl.nn.soft_equivariance import RepLinear, mc_regulariser
    >>> hard = RepLinear("3xvectors", "vectors", group="O3").double()
    >>> x = torch.randn(16, 9, dtype=torch.float64)
    >>> float(mc_regulariser(hard, x, "O3", n_samples=4, generator=0)) < 1e-20
    True
    >>> free = RepLinear("3xvectors", "vectors").double()
    >>> float(mc_regulariser(free, x, "O3", generator=0)) > 1e-3
    True
    """
    if not callable(model):
        raise TypeError(f"model: expected a callable module, got {type(model).__name__}")
    G = candidate_group(group)
    check_int("n_samples", n_samples, min=1, max=10_000)
    generator = _generator(generator)
    _check_inputs(x)
    kin, kout = _io_kinds(model, x, rep_in, rep_out)
    total = None
    for d, _ in _residuals(model, x, G, kin, kout, n_samples, generator, _float_dtype(x)):
        r = (d * d).mean() if d.numel() else d.new_zeros(())
        total = r if total is None else total + r
    total = total / n_samples
    return torch.nan_to_num(total, nan=math.inf, posinf=math.inf)


class StrengthTuner(nn.Module):
    """Automatic strengths of several candidate groups' regularisers (Kim et al., ICML'23).

    The loss term is ``Σ_j λ_j R_j`` with ``R_j`` the projection regulariser of group ``j``
    (:func:`projection_regulariser`; or :func:`mc_regulariser` on the batch with ``method="mc"``).
    :meth:`penalty` also accumulates the detached ``R_j`` of every group; :meth:`adjust` (called by
    :meth:`epoch_hook` every ``every`` epochs) sets ``λ_j = initial · (R_min / R_j)^power`` from their
    means and starts a new average. The strengths, the running sums and the adjustment count are
    buffers, so they are saved with the model's ``state_dict`` and in the bench loop's checkpoints.

    Parameters
    ----------
    groups : sequence of str or CandidateGroup
        Distinct candidate groups (linear ones for ``method="projection"``).
    initial : float
        The largest strength (finite, ≥ 0; ``ValueError`` naming ``initial``).
    power : float
        The exponent ``p`` (finite, ≥ 0; 0 keeps every strength at ``initial``).
    every : int
        Adjust every this many epochs (≥ 1).
    start : {"largest", "all"}
        Strengths before the first adjustment: ``initial`` for the largest groups (not a subgroup of
        another candidate) and 0 for the rest, or ``initial`` for all.
    method : {"projection", "mc"}
        Which regulariser ``R_j`` is.

    Examples
    --------
    >>> import torch
    >>> from geodl.nn.soft_equivariance import RepLinear, StrengthTuner
    >>> layer = RepLinear("vectors", "vectors").double()
    >>> tuner = StrengthTuner(["O3", "O2z"], initial=1.0, power=1.0, every=1)
    >>> tuner.strengths
    {'O3': 1.0, 'O2z': 0.0}
    >>> loss = tuner.penalty(layer)
    >>> tuner.epoch_hook(1, layer, [])
    >>> s = tuner.strengths
    >>> s["O2z"] >= s["O3"] and max(s.values()) == 1.0
    True
    """

    def __init__(self, groups: Sequence, *, initial: float = 1.0, power: float = 1.0, every: int = 1,
                 start: str = "largest", method: str = "projection"):
        super().__init__()
        Gs = _candidate_groups(groups)
        names = [G.name for G in Gs]
        if len(set(names)) != len(names):
            raise ValueError(f"groups: expected distinct groups, got {names}")
        self.method = check_choice("method", method, ("projection", "mc"))
        if method == "projection":
            bad = [G.name for G in Gs if not G.linear]
            if bad:
                raise ValueError(f"groups: {bad} contain translations, which have no projector; use method='mc'")
        self.initial = check_number("initial", initial, nonnegative=True)
        self.power = check_number("power", power, nonnegative=True)
        self.every = check_int("every", every, min=1)
        self.start = check_choice("start", start, ("largest", "all"))
        self.groups = Gs
        self.names = names
        on = [not any(G != H and G.issubgroup(H) for H in Gs) for G in Gs] if start == "largest" else [True] * len(Gs)
        self.register_buffer("strength", torch.tensor([self.initial if o else 0.0 for o in on], dtype=torch.float64))
        self.register_buffer("running", torch.zeros(len(Gs), dtype=torch.float64))
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))
        self.register_buffer("adjustments", torch.zeros((), dtype=torch.long))
        self.register_buffer("last_mean", torch.full((len(Gs),), float("nan"), dtype=torch.float64))

    def extra_repr(self) -> str:
        return (f"groups={self.names}, initial={self.initial}, power={self.power}, every={self.every}, "
                f"start={self.start!r}, method={self.method!r}")

    @property
    def strengths(self) -> dict[str, float]:
        """``{group name: λ}``."""
        return {n: float(v) for n, v in zip(self.names, self.strength.tolist())}

    def set_strength(self, group, strength: float) -> None:
        """Set one group's strength by hand (finite, ≥ 0; ``ValueError`` naming ``strength``)."""
        name = candidate_group(group).name
        if name not in self.names:
            raise ValueError(f"group: {name!r} is not one of the tuner's groups {self.names}")
        v = check_number("strength", strength, nonnegative=True)
        self.strength[self.names.index(name)] = v

    @torch.no_grad()
    def initialise(self, model: nn.Module) -> int:
        """Project the free weights of ``model`` onto the equivariant maps of the largest group.

        The tuned model then starts exactly equivariant to the largest candidate (the group the
        strengths start from) and leaves it only where the data ask: ``R_j`` measures what training
        did, not the random initialisation (which is about equally far from every group). Needs one
        largest candidate (a group containing all the others' rotations, e.g. ``O3`` above ``O2z``).
        Returns the number of layers projected.
        """
        if not isinstance(model, nn.Module):
            raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
        top = [G for G in self.groups if not any(G != H and G.issubgroup(H) for H in self.groups)]
        if len(top) != 1 or not top[0].linear:
            raise ValueError(f"groups: initialise needs one largest linear candidate, got {[G.name for G in top]}")
        from geodl.nn.soft_equivariance._projector import equivariant_basis

        n = 0
        for m in _penalised_layers(model):
            W, b = getattr(m, "weight", None), getattr(m, "bias", None)
            if not isinstance(W, nn.Parameter):
                continue  # hard or RPP layers: nothing free to project
            B = equivariant_basis(m.rep_in, m.rep_out, top[0])
            W.copy_(B.project(W.detach().double()).to(W.dtype))
            if isinstance(b, nn.Parameter):
                b.copy_(B.project_bias(b.detach().double()).to(b.dtype))
            n += 1
        if n == 0:
            raise ValueError("model: has no free layers with declared representations (RepLinear without a group)")
        return n

    def _one(self, model, G, x, mc_kwargs) -> torch.Tensor:
        if self.method == "projection":
            return projection_regulariser(model, G)
        if x is None:
            raise ValueError("x: method='mc' needs the batch inputs")
        return mc_regulariser(model, x, G, **mc_kwargs).to(torch.float64)

    def regularisers(self, model: nn.Module, x=None, *, grad_for=None, **mc_kwargs) -> torch.Tensor:
        """``(R_j)`` of every group, a float64 vector (differentiable where ``grad_for[j]``, default all)."""
        vals = []
        for j, G in enumerate(self.groups):
            if grad_for is None or bool(grad_for[j]):
                vals.append(self._one(model, G, x, mc_kwargs))
            else:
                with torch.no_grad():
                    vals.append(self._one(model, G, x, mc_kwargs))
        return torch.stack(vals)

    def penalty(self, model: nn.Module, x=None, **mc_kwargs) -> torch.Tensor:
        """``Σ_j λ_j R_j`` (a float64 scalar, differentiable); in training mode also accumulates ``R_j``.

        Groups with ``λ_j = 0`` are still evaluated (their ``R_j`` decides the next strengths) but
        without a graph.
        """
        on = self.strength > 0
        R = self.regularisers(model, x, grad_for=on.tolist(), **mc_kwargs)
        if self.training:
            with torch.no_grad():
                self.running += torch.nan_to_num(R.detach(), nan=math.inf)
                self.count += 1
        if not bool(on.any()):
            return (R * 0).sum()
        return (self.strength[on] * R[on]).sum()

    forward = penalty

    @torch.no_grad()
    def adjust(self) -> dict[str, float]:
        """``λ_j = initial · (R_min / R_j)^power`` from the mean ``R_j`` since the last adjustment.

        Returns the new strengths; without accumulated values nothing changes. ``R_j = 0`` for
        several groups gives each of them ``initial``; a non-finite mean gives 0.
        """
        if float(self.count) == 0:
            return self.strengths
        mean = self.running / self.count
        self.last_mean.copy_(mean)
        finite = torch.isfinite(mean)
        if not bool(finite.any()):
            new = torch.zeros_like(mean)
        else:
            rmin = mean[finite].min()
            ratio = torch.where(mean > 0, rmin / torch.where(mean > 0, mean, torch.ones_like(mean)),
                                torch.ones_like(mean))
            ratio = torch.where(finite, ratio, torch.zeros_like(ratio))
            new = self.initial * ratio.clamp(0.0, 1.0) ** self.power
        self.strength.copy_(new)
        self.running.zero_()
        self.count.zero_()
        self.adjustments += 1
        return self.strengths

    def epoch_hook(self, epoch: int, model=None, history=None, **_) -> None:
        """The :func:`geodl.bench.train` hook: :meth:`adjust` after every ``every``-th epoch."""
        check_int("epoch", epoch, min=0)
        if epoch > 0 and epoch % self.every == 0:
            self.adjust()


def symmetry_report(model: nn.Module, x, groups: Sequence, *, rep_in=None, rep_out=None, tuner=None,
                    n_samples: int = 8, generator=0) -> list[dict]:
    """Per candidate group: the projection regulariser, the strength and the relative equivariance error.

    Parameters
    ----------
    model : torch.nn.Module
    x : Tensor, dict or PyG Data
        Evaluation inputs.
    groups : sequence of str or CandidateGroup
    rep_in, rep_out : optional
        As in :func:`mc_regulariser` (default: the model's).
    tuner : StrengthTuner, optional
        Its strengths are reported (``None`` for groups it does not hold).
    n_samples : int
        Group elements per group.
    generator : int or torch.Generator

    Returns
    -------
    list of dict, one per group: ``group``, ``regulariser`` (projection, or None when the model has no
    representation layers or the group has translations), ``strength`` (or None) and
    ``equivariance_error`` ``= mean_g ‖f(g·x) − g·f(x)‖ / ‖g·f(x)‖`` (0 for a zero output).

    Examples
    --------
    >>> import torch
    >>> from geodl.nn.soft_equivariance import RepLinear, symmetry_report
    >>> layer = RepLinear("2xvectors", "vectors", group="O2z").double()
    >>> rows = symmetry_report(layer, torch.randn(32, 6, dtype=torch.float64), ["O3", "O2z"])
    >>> [r["group"] for r in rows], rows[1]["equivariance_error"] < 1e-12 < rows[0]["equivariance_error"]
    (['O3', 'O2z'], True)
    """
    Gs = _candidate_groups(groups)
    if tuner is not None and not isinstance(tuner, StrengthTuner):
        raise TypeError(f"tuner: expected a StrengthTuner or None, got {type(tuner).__name__}")
    check_int("n_samples", n_samples, min=1, max=10_000)
    gen = _generator(generator)
    _check_inputs(x)
    kin, kout = _io_kinds(model, x, rep_in, rep_out)
    has_layers = bool(_penalised_layers(model))
    strengths = tuner.strengths if tuner is not None else {}
    rows = []
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for G in Gs:
                errs = []
                for d, gfx in _residuals(model, x, G, kin, kout, n_samples, gen, _float_dtype(x)):
                    den = float(torch.linalg.vector_norm(gfx.double()))
                    num = float(torch.linalg.vector_norm(d.double()))
                    errs.append(0.0 if den == 0 and num == 0 else (num / den if den > 0 else math.inf))
                reg = float(projection_regulariser(model, G)) if has_layers and G.linear else None
                rows.append({"group": G.name, "regulariser": reg, "strength": strengths.get(G.name),
                             "equivariance_error": sum(errs) / len(errs)})
    finally:
        model.train(was_training)
    return rows
