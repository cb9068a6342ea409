"""Geographic location encoders: spherical harmonics + SIREN and the baselines they are compared with.

Rußwurm et al., "Geographic location encoding with spherical harmonics and sinusoidal
representation networks", ICLR 2024. A location encoder is a *positional encoder* (lon/lat in
degrees → features) followed by a *network* (features → logits):

- positional encoders: :class:`SphericalHarmonicsEncoder` (``"sphericalharmonics"``, backed by the
  stable high-degree :func:`geodl.ops.spherical_harmonics`), and the baselines ``"direct"``,
  ``"cartesian3d"``, ``"wrap"``, ``"grid"``, ``"theory"``, ``"spherec"``, ``"spherec+"``,
  ``"spherem"``, ``"spherem+"`` (Mac Aodha et al. 2019; Mai et al., Space2Vec 2020 and
  Sphere2Vec 2023), all plain differentiable torch;
- networks: :class:`Siren` (sine activations, first-layer ω0), :class:`FcNet` (fully connected
  residual net of the GeoPrior paper) and :class:`LinearHead`;
- :class:`LocationEncoder` composes the two, from modules or names (:func:`make_encoder`,
  :func:`make_network`).

Multi-scale baselines (grid, theory, sphere*) use S scales with wavelengths geometric from
``max_radius`` down to ``min_radius`` degrees; the angle (radians) at scale s is multiplied by
``360 / wavelength_s``, so the coarsest scale with ``max_radius=360`` is the angle itself.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping

import torch
from torch import nn

from geodl._checks import (check_alloc, check_choice, check_int, check_memory, check_number, check_positive_int,
                           check_tensor)
from geodl.groups import Symmetry, lonlat_to_xyz
from geodl.nn._layers import check_linear_sizes

__all__ = [
    "SphericalHarmonicsEncoder",
    "Direct",
    "Cartesian3D",
    "Wrap",
    "Grid",
    "Theory",
    "SphereC",
    "SphereCPlus",
    "SphereM",
    "SphereMPlus",
    "Siren",
    "SirenLayer",
    "FcNet",
    "LinearHead",
    "LocationEncoder",
    "ENCODERS",
    "NETWORKS",
    "make_encoder",
    "make_network",
]


# Rows are independent samples: every module here maps row i of its input to row i of its output
# (permutation equivariant over rows). Lon/lat encoders have no rotation symmetry in general
# (rotating the sphere about the polar axis shifts longitude, which only some encoders respect),
# so nothing more is declared.
_ROWS_LONLAT = Symmetry("perm", {"lonlat": "node:scalar"}, "node:scalar",
                        note="rows are independent samples (lon/lat in degrees); no rotation symmetry declared")
_ROWS_FEATURES = Symmetry("perm", {"x": "node:scalar"}, "node:scalar",
                          note="rows are independent samples (in eval mode: dropout mixes in randomness)")


def _check_lonlat(lonlat: torch.Tensor) -> torch.Tensor:
    check_tensor("lonlat", lonlat, shape=(None, 2), floating=True, finite=not torch.compiler.is_compiling())
    if not torch.compiler.is_compiling():
        lat = lonlat[:, 1]
        if bool(((lat < -90.0) | (lat > 90.0)).any()):
            raise ValueError("lonlat: latitudes (lonlat[:, 1]) must lie in [-90, 90] degrees")
    return lonlat


def _check_features(x, linear: nn.Linear, name: str = "x") -> torch.Tensor:
    """``x`` must be a floating ``(N, in_features)`` tensor of the dtype of ``linear``'s weight."""
    check_tensor(name, x, shape=(None, linear.in_features), floating=True)
    _check_param_dtype(name, x, linear.weight)
    return x


def _check_param_dtype(name: str, x: torch.Tensor, param: torch.Tensor | None) -> None:
    if param is not None and x.dtype != param.dtype:
        raise TypeError(f"{name}: dtype {x.dtype} does not match the module's parameters ({param.dtype}); "
                        f"convert one of them (e.g. module.to({x.dtype}))")


def _radians(lonlat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    lonlat = _check_lonlat(lonlat)
    return torch.deg2rad(lonlat[:, 0:1]), torch.deg2rad(lonlat[:, 1:2])


class _Encoder(nn.Module):
    """Base: ``forward(lonlat (N, 2) degrees) -> (N, embedding_dim)``."""

    embedding_dim: int
    symmetry = _ROWS_LONLAT

    def extra_repr(self) -> str:
        return f"embedding_dim={self.embedding_dim}"


class SphericalHarmonicsEncoder(_Encoder):
    """Real orthonormal spherical harmonics of all degrees ``0..lmax`` of the location.

    Parameters
    ----------
    lmax : int
        Largest degree; ``embedding_dim = (lmax+1)²``. Stable to very high degree in float32
        (the paper's analytic harmonics are wrong in float32 from degree ~14).

    Examples
    --------
    >>> import torch
    >>> enc = SphericalHarmonicsEncoder(10)
    >>> enc(torch.tensor([[8.5, 47.4], [-180.0, -90.0]])).shape
    torch.Size([2, 121])
    """

    def __init__(self, lmax: int = 10):
        super().__init__()
        self.lmax = check_int("lmax", lmax, min=0)
        self.embedding_dim = (lmax + 1) ** 2

    def forward(self, lonlat: torch.Tensor) -> torch.Tensor:
        from geodl.ops import spherical_harmonics

        _check_lonlat(lonlat)
        return spherical_harmonics(self.lmax, lonlat, input="lonlat")


class Direct(_Encoder):
    """Longitude and latitude in radians, ``(λ, φ)`` in [-π, π] × [-π/2, π/2] (dim 2).

    Examples
    --------
    >>> Direct()(torch.tensor([[180.0, 90.0]])).tolist()  # doctest: +ELLIPSIS
    [[3.14159..., 1.57079...]]
    """

    embedding_dim = 2

    def forward(self, lonlat: torch.Tensor) -> torch.Tensor:
        lon, lat = _radians(lonlat)
        return torch.cat([lon, lat], dim=1)


class Cartesian3D(_Encoder):
    """The unit vector ``(cos φ cos λ, cos φ sin λ, sin φ)`` (dim 3).

    Examples
    --------
    >>> Cartesian3D()(torch.tensor([[90.0, 0.0]])).round(decimals=6).abs().tolist()
    [[0.0, 1.0, 0.0]]
    """

    embedding_dim = 3

    def forward(self, lonlat: torch.Tensor) -> torch.Tensor:
        return lonlat_to_xyz(_check_lonlat(lonlat))


class Wrap(_Encoder):
    """``(cos λ, sin λ, cos φ, sin φ)`` (Mac Aodha et al. 2019; dim 4).

    Examples
    --------
    >>> Wrap()(torch.tensor([[0.0, 0.0]])).tolist()
    [[1.0, 0.0, 1.0, 0.0]]
    """

    embedding_dim = 4

    def forward(self, lonlat: torch.Tensor) -> torch.Tensor:
        lon, lat = _radians(lonlat)
        return torch.cat([lon.cos(), lon.sin(), lat.cos(), lat.sin()], dim=1)


class _MultiScale(_Encoder):
    """Shared by the multi-scale sinusoidal baselines: ``frequency_num`` scales (see module doc)."""

    per_scale: int

    def __init__(self, frequency_num: int = 16, min_radius: float = 10.0, max_radius: float = 360.0):
        super().__init__()
        check_int("frequency_num", frequency_num, min=1)
        check_memory("frequency_num", frequency_num, 64 * frequency_num, "cpu", what=f"{frequency_num} scales")
        check_number("min_radius", min_radius)
        check_number("max_radius", max_radius)
        if not (0 < min_radius <= max_radius):
            raise ValueError(f"min_radius, max_radius: expected 0 < min_radius <= max_radius, got {min_radius}, {max_radius}")
        s = torch.arange(frequency_num, dtype=torch.float64) / max(frequency_num - 1, 1)
        wavelength = max_radius * (min_radius / max_radius) ** s
        self.register_buffer("freqs", (360.0 / wavelength).to(torch.get_default_dtype()), persistent=False)
        self.frequency_num, self.min_radius, self.max_radius = frequency_num, min_radius, max_radius
        self.embedding_dim = self.per_scale * frequency_num

    def forward(self, lonlat: torch.Tensor) -> torch.Tensor:
        lon, lat = _radians(lonlat)
        # the per-scale features and their stack: about twice the output
        check_alloc("lonlat", f"{lonlat.shape[0]} rows", lonlat.shape[0], 2 * self.embedding_dim, lonlat.dtype,
                    lonlat.device)
        f = self.freqs.to(lonlat.dtype)
        feats = self._features(lon, lat, lon * f, lat * f)  # each (N, S)
        return torch.stack(feats, dim=2).reshape(lonlat.shape[0], self.embedding_dim)  # also for 0 rows

    def _features(self, lon, lat, lon_s, lat_s) -> list[torch.Tensor]:
        raise NotImplementedError


class Grid(_MultiScale):
    """Space2Vec *grid*: ``sin, cos`` of every scaled λ and φ (dim 4S).

    Examples
    --------
    >>> Grid(frequency_num=8)(torch.zeros(3, 2)).shape
    torch.Size([3, 32])
    """

    per_scale = 4

    def _features(self, lon, lat, lon_s, lat_s):
        return [lon_s.sin(), lon_s.cos(), lat_s.sin(), lat_s.cos()]


class Theory(_MultiScale):
    """Space2Vec *theory*: ``sin, cos`` of (λ, φ) projected on three unit vectors 120° apart (dim 6S).

    Examples
    --------
    >>> Theory(frequency_num=8)(torch.zeros(3, 2)).shape
    torch.Size([3, 48])
    """

    per_scale = 6

    def _features(self, lon, lat, lon_s, lat_s):
        out = []
        for k in range(3):
            a = 2.0 * math.pi * k / 3.0
            proj = lon_s * math.cos(a) + lat_s * math.sin(a)
            out += [proj.sin(), proj.cos()]
        return out


class SphereC(_MultiScale):
    """Sphere2Vec *sphereC*: ``sin φ_s, cos φ_s cos λ_s, cos φ_s sin λ_s`` per scale (dim 3S).

    Examples
    --------
    >>> SphereC(frequency_num=8)(torch.zeros(3, 2)).shape
    torch.Size([3, 24])
    """

    per_scale = 3

    def _features(self, lon, lat, lon_s, lat_s):
        return [lat_s.sin(), lat_s.cos() * lon_s.cos(), lat_s.cos() * lon_s.sin()]


class SphereCPlus(_MultiScale):
    """Sphere2Vec *sphereC+*: sphereC plus grid terms ``cos φ_s, sin λ_s, cos λ_s`` (dim 6S).

    Examples
    --------
    >>> SphereCPlus(frequency_num=8)(torch.zeros(3, 2)).shape
    torch.Size([3, 48])
    """

    per_scale = 6

    def _features(self, lon, lat, lon_s, lat_s):
        cl = lat_s.cos()
        return [lat_s.sin(), cl, lon_s.sin(), lon_s.cos(), cl * lon_s.cos(), cl * lon_s.sin()]


class SphereM(_MultiScale):
    """Sphere2Vec *sphereM*: multi-scale terms mixed with the single-scale angle (dim 5S).

    ``sin φ_s, cos φ_s cos λ, cos φ cos λ_s, cos φ_s sin λ, cos φ sin λ_s``.

    Examples
    --------
    >>> SphereM(frequency_num=8)(torch.zeros(3, 2)).shape
    torch.Size([3, 40])
    """

    per_scale = 5

    def _features(self, lon, lat, lon_s, lat_s):
        return [lat_s.sin(), lat_s.cos() * lon.cos(), lat.cos() * lon_s.cos(), lat_s.cos() * lon.sin(), lat.cos() * lon_s.sin()]


class SphereMPlus(_MultiScale):
    """Sphere2Vec *sphereM+*: sphereM plus ``cos φ_s, sin λ_s, cos λ_s`` (dim 8S).

    Examples
    --------
    >>> SphereMPlus(frequency_num=8)(torch.zeros(3, 2)).shape
    torch.Size([3, 64])
    """

    per_scale = 8

    def _features(self, lon, lat, lon_s, lat_s):
        return [lat_s.sin(), lat_s.cos(), lon_s.sin(), lon_s.cos(), lat_s.cos() * lon.cos(), lat.cos() * lon_s.cos(),
                lat_s.cos() * lon.sin(), lat.cos() * lon_s.sin()]


class SirenLayer(nn.Module):
    """``sin(ω0 · (W x + b))`` with SIREN's initialisation (Sitzmann et al., NeurIPS 2020).

    First layer: ``W, b ~ U(-1/n, 1/n)``; later layers ``U(-√(6/n)/ω0, √(6/n)/ω0)`` (n = fan-in),
    which keeps the pre-activations ~ arcsine-distributed through depth. ``activation=False``
    gives the linear output layer with the same initialisation. ``dim_in``, ``dim_out`` are positive
    ints and ``w0 > 0`` (``ValueError`` naming the argument otherwise); zero rows give zero rows.
    """

    symmetry = _ROWS_FEATURES

    def __init__(self, dim_in: int, dim_out: int, w0: float = 1.0, is_first: bool = False, activation: bool = True):
        super().__init__()
        dim_in, dim_out = check_positive_int("dim_in", dim_in), check_positive_int("dim_out", dim_out)
        w0 = check_number("w0", w0, positive=True)
        check_linear_sizes("dim_in, dim_out", f"{dim_in}, {dim_out}", [(dim_in, dim_out)])
        self.linear = nn.Linear(dim_in, dim_out)
        self.w0, self.activation = float(w0), activation
        bound = 1.0 / dim_in if is_first else math.sqrt(6.0 / dim_in) / self.w0
        with torch.no_grad():
            self.linear.weight.uniform_(-bound, bound)
            self.linear.bias.uniform_(-bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.linear(_check_features(x, self.linear))
        return torch.sin(self.w0 * y) if self.activation else y


class Siren(nn.Module):
    """Sinusoidal representation network: ``num_layers`` sine layers and a linear output layer.

    Parameters
    ----------
    dim_in, dim_out : int
    dim_hidden : int
    num_layers : int
        Number of hidden sine layers (≥ 1).
    w0 : float
        Frequency factor of the hidden layers.
    w0_initial : float
        ω0 of the first layer (30 in SIREN; it sets the highest frequency the net starts with).

    Widths are positive ints and ``w0``, ``w0_initial`` positive numbers (``ValueError`` naming
    the argument otherwise; also when the parameters would not fit in memory). An input with zero
    rows gives an output with zero rows.

    Examples
    --------
    >>> net = Siren(121, 1, dim_hidden=32, num_layers=2)
    >>> net(torch.zeros(5, 121)).shape
    torch.Size([5, 1])
    """

    symmetry = _ROWS_FEATURES

    def __init__(self, dim_in: int, dim_out: int, dim_hidden: int = 128, num_layers: int = 2, w0: float = 1.0,
                 w0_initial: float = 30.0):
        super().__init__()
        check_int("num_layers", num_layers, min=1)
        dim_in, dim_out = check_positive_int("dim_in", dim_in), check_positive_int("dim_out", dim_out)
        dim_hidden = check_positive_int("dim_hidden", dim_hidden)
        check_number("w0", w0, positive=True)
        check_number("w0_initial", w0_initial, positive=True)
        check_linear_sizes("dim_hidden, num_layers", f"{dim_hidden}, {num_layers}", [(dim_hidden, dim_hidden)],
                           repeat=num_layers - 1)
        check_linear_sizes("dim_in, dim_hidden, dim_out", f"{dim_in}, {dim_hidden}, {dim_out}",
                           [(dim_in, dim_hidden), (dim_hidden, dim_out)])
        layers = [SirenLayer(dim_in, dim_hidden, w0=w0_initial, is_first=True)]
        layers += [SirenLayer(dim_hidden, dim_hidden, w0=w0) for _ in range(num_layers - 1)]
        layers.append(SirenLayer(dim_hidden, dim_out, w0=w0, activation=False))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(_check_features(x, self.layers[0].linear))


class _ResLayer(nn.Module):
    def __init__(self, dim: int, dropout: float):
        super().__init__()
        self.block = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(dim, dim), nn.ReLU())

    def forward(self, x):
        return x + self.block(x)


class FcNet(nn.Module):
    """Fully connected residual network (Mac Aodha et al., GeoPrior 2019).

    ``Linear → ReLU → num_blocks × (x + ReLU(Linear(Dropout(ReLU(Linear x))))) → Linear`` (no
    output bias). Widths are positive ints, ``num_blocks >= 0``, ``dropout`` in [0, 1]
    (``ValueError`` naming the argument otherwise); zero rows give zero rows.

    Examples
    --------
    >>> FcNet(4, 3, dim_hidden=16)(torch.zeros(2, 4)).shape
    torch.Size([2, 3])
    """

    symmetry = _ROWS_FEATURES

    def __init__(self, dim_in: int, dim_out: int, dim_hidden: int = 256, num_blocks: int = 4, dropout: float = 0.5):
        super().__init__()
        dim_in, dim_out = check_positive_int("dim_in", dim_in), check_positive_int("dim_out", dim_out)
        dim_hidden = check_positive_int("dim_hidden", dim_hidden)
        num_blocks = check_int("num_blocks", num_blocks, min=0)
        check_number("dropout", dropout, lo=0.0, hi=1.0)
        check_linear_sizes("dim_hidden, num_blocks", f"{dim_hidden}, {num_blocks}", [(dim_hidden, dim_hidden)] * 2,
                           repeat=num_blocks)
        check_linear_sizes("dim_in, dim_hidden, dim_out", f"{dim_in}, {dim_hidden}, {dim_out}",
                           [(dim_in, dim_hidden), (dim_hidden, dim_out)])
        self.feats = nn.Sequential(nn.Linear(dim_in, dim_hidden), nn.ReLU(), *[_ResLayer(dim_hidden, dropout) for _ in range(num_blocks)])
        self.head = nn.Linear(dim_hidden, dim_out, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.feats(_check_features(x, self.feats[0])))


class LinearHead(nn.Module):
    """A single linear layer from features to logits (positive widths; zero rows give zero rows).

    Examples
    --------
    >>> LinearHead(9, 2)(torch.zeros(4, 9)).shape
    torch.Size([4, 2])
    """

    symmetry = _ROWS_FEATURES

    def __init__(self, dim_in: int, dim_out: int):
        super().__init__()
        dim_in, dim_out = check_positive_int("dim_in", dim_in), check_positive_int("dim_out", dim_out)
        check_linear_sizes("dim_in, dim_out", f"{dim_in}, {dim_out}", [(dim_in, dim_out)])
        self.linear = nn.Linear(dim_in, dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(_check_features(x, self.linear))


ENCODERS: dict[str, type] = {
    "sphericalharmonics": SphericalHarmonicsEncoder,
    "direct": Direct,
    "cartesian3d": Cartesian3D,
    "wrap": Wrap,
    "grid": Grid,
    "theory": Theory,
    "spherec": SphereC,
    "spherec+": SphereCPlus,
    "spherem": SphereM,
    "spherem+": SphereMPlus,
}
NETWORKS: dict[str, type] = {"linear": LinearHead, "siren": Siren, "fcnet": FcNet}


def make_encoder(name: str, **kwargs) -> nn.Module:
    """Positional encoder by name (see :data:`ENCODERS`); ``kwargs`` go to its constructor.

    Examples
    --------
    >>> make_encoder("sphericalharmonics", lmax=4).embedding_dim
    25
    >>> make_encoder("spherem+", frequency_num=4).embedding_dim
    32
    """
    check_choice("encoder", name, ENCODERS)
    return ENCODERS[name](**kwargs)


def make_network(name: str, dim_in: int, dim_out: int, **kwargs) -> nn.Module:
    """Network by name (see :data:`NETWORKS`); ``kwargs`` go to its constructor.

    Examples
    --------
    >>> make_network("siren", 25, 16, dim_hidden=8, num_layers=1)(torch.zeros(2, 25)).shape
    torch.Size([2, 16])
    """
    check_choice("network", name, NETWORKS)
    return NETWORKS[name](dim_in, dim_out, **kwargs)


class LocationEncoder(nn.Module):
    """Positional encoder followed by a network: ``lonlat (N, 2) degrees -> logits (N, num_classes)``.

    Parameters
    ----------
    encoder : str or nn.Module
        A name of :data:`ENCODERS` or a module with an ``embedding_dim`` attribute.
    network : str or nn.Module
        A name of :data:`NETWORKS` or a module mapping ``(N, embedding_dim)`` to ``(N, num_classes)``.
    num_classes : int
        Output width (1 for a binary logit).
    encoder_kwargs, network_kwargs : dict, optional
        Constructor arguments when ``encoder``/``network`` are names.

    Examples
    --------
    >>> import torch
    >>> model = LocationEncoder("sphericalharmonics", "siren", 1, encoder_kwargs={"lmax": 10},
    ...                         network_kwargs={"dim_hidden": 32, "num_layers": 2})
    >>> model(torch.tensor([[8.5, 47.4], [151.2, -33.9]])).shape
    torch.Size([2, 1])
    """

    symmetry = _ROWS_LONLAT

    def __init__(self, encoder, network, num_classes: int, encoder_kwargs: dict | None = None,
                 network_kwargs: dict | None = None):
        super().__init__()
        check_int("num_classes", num_classes, min=1)
        for name, value in (("encoder", encoder), ("network", network)):
            if not isinstance(value, (str, nn.Module)):
                raise TypeError(f"{name}: expected a name (str) or an nn.Module, got {type(value).__name__}")
        for name, value in (("encoder_kwargs", encoder_kwargs), ("network_kwargs", network_kwargs)):
            if value is not None and not isinstance(value, Mapping):
                raise TypeError(f"{name}: expected a dict of constructor arguments (or None), got {type(value).__name__}")
        if isinstance(network, str):  # the output layer (width num_classes) before the network is built
            check_choice("network", network, NETWORKS)
            params = inspect.signature(NETWORKS[network]).parameters
            hidden = (network_kwargs or {}).get("dim_hidden", params["dim_hidden"].default if "dim_hidden" in params else 1)
            if isinstance(hidden, int):
                check_linear_sizes("num_classes", num_classes, [(hidden, num_classes)])
        self.encoder = make_encoder(encoder, **(encoder_kwargs or {})) if isinstance(encoder, str) else encoder
        dim = check_int("encoder.embedding_dim", getattr(self.encoder, "embedding_dim", None), min=1)
        self.network = make_network(network, dim, num_classes, **(network_kwargs or {})) if isinstance(network, str) else network
        self.num_classes = num_classes

    def forward(self, lonlat: torch.Tensor) -> torch.Tensor:
        check_tensor("lonlat", lonlat, shape=(None, 2), floating=True)  # values: checked by the encoder
        _check_param_dtype("lonlat", lonlat, next(self.network.parameters(), None))
        return self.network(self.encoder(lonlat))
