"""Articulated multi-part shapes: seeded point clouds of objects made of rigid parts that turn about
joints, with per-point part labels, part instances and part centres; the embedded default of the
APEN benchmark (piecewise E(3) equivariance).

Classes and parts (:data:`ARTICULATED_CLASSES`, class -> part labels; a label shared by two
instances, such as the figure's arms, is one label because left and right cannot be told apart
under reflections). Every part is one trimesh primitive in its own frame; the nominal sizes below
are stretched per sample, each dimension of each part label by its own factor ``U(0.8, 1.2)``
(both instances of a label get the same factors). The canonical (all angles 0) objects fit in a
radius of about 1 around their centroid.

=======  ========  =============================================  ======  ==========  ==========
class    part      primitive (nominal size)                       parent  joint axes  instances
=======  ========  =============================================  ======  ==========  ==========
figure   torso     box 0.44 x 0.24 x 0.62                         root                1
figure   head      ellipsoid, semi-axes 0.11, 0.16, 0.13          torso   z (turn)    1
figure   arm       capsule, radius 0.045, length 0.5 (T-pose)     torso   y, z        2
figure   leg       cylinder, radius 0.065, length 0.64            torso   x (swing)   2
knife    handle    capsule, radius 0.08, length 0.9               root                1
knife    blade     flat box 0.85 x 0.2 x 0.03                     handle  z (fold)    1
lamp     base      flat cylinder, radius 0.4, height 0.09         root                1
lamp     arm       thin cylinder, radius 0.032, length 0.95       base    x           1
lamp     shade     cone, radius 0.23, height 0.36 (apex first)    arm     y           1
robot    base      squat cylinder, radius 0.21, height 0.18       root                1
robot    upper     box 0.11 x 0.11 x 0.5                          base    x           1
robot    fore      capsule, radius 0.035, length 0.44             upper   x           1
robot    gripper   torus, radii 0.08 and 0.022                    fore    y           1
=======  ========  =============================================  ======  ==========  ==========

Joint model. Each non-root part hangs from its parent at a joint point fixed in the parent's
frame, on the parent's surface or off it by the child's half-thickness (the child's rounded end is
centred there, or its flat end touches the parent), and turns about axes fixed in the parent's
frame: a pose gives every axis an angle, the figure's arms have two (raise about y, then swing
about z: ``R = R_y(θ1) R_z(θ2)``), every other joint one. Transforms compose down the tree, so a
child moves with its parent and **every part instance is moved by its own rigid motion**:
``x = R_k x_local + t_k`` with ``R_k = R_parent R(θ)``, ``t_k = R_parent joint + t_parent``. The
clearances are chosen so that no part enters another (its parent, a grandparent or a sibling) for
any joint angles up to 75 degrees in magnitude; at 90 degrees some parts touch (the robot's upper
arm lies flat on its base). The tests check this at the largest default angles.

Poses. Every angle is ``θ = ±|θ|`` (random sign) with ``|θ| ~ U(0, a)`` for "train" and "val"
and ``|θ| ~ U(a, b)`` for "test" (disjoint ranges: the test poses are not seen in training), with
``joint_range = (a, b)`` (default 30 and 75 degrees) for every joint.

One sample (its own numpy generator, seeded by ``(seed, split, class, index)``: the splits come
from different seeds and a smaller ``per_class`` gives a prefix of a larger one):

1. the part proportions, then the joint angles;
2. the point counts: ``min_part_points`` per part instance plus a multinomial, area-weighted share
   of the rest; the points are sampled on each part's surface (trimesh, area weighted), posed and
   shuffled;
3. the cloud is centred at its centroid (not rescaled: the scale does not depend on the pose);
4. a global rigid motion: ``rotate="so3"`` a Haar-random rotation
   (:func:`geodl.groups.random_rotation`, with a torch generator seeded from the sample's
   generator), ``"z"`` a uniform rotation about z, ``"none"`` none; a translation ``N(0, 0.5^2 I)``
   except with ``"none"``;
5. Gaussian noise of standard deviation ``noise``; ``centre`` is the centroid of each part
   instance's final (noisy) points.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from geodl._checks import check_alloc, check_choice, check_int, check_number
from geodl.data._shapes import _SPLITS, _StackedClouds

__all__ = ["ArticulatedShapes", "ARTICULATED_CLASSES", "PART_LABELS", "PART_OFFSETS"]

ARTICULATED_CLASSES = {
    "figure": ("torso", "head", "arm", "leg"),
    "knife": ("handle", "blade"),
    "lamp": ("base", "arm", "shade"),
    "robot": ("base", "upper", "fore", "gripper"),
}
"""Class name -> its part labels (sorted by class name; the class label is the index)."""

PART_OFFSETS = tuple(int(v) for v in np.cumsum([0] + [len(p) for p in ARTICULATED_CLASSES.values()])[:-1])
"""The global label of part ``j`` of class ``c`` is ``PART_OFFSETS[c] + j``."""

PART_LABELS = tuple(f"{c}/{p}" for c, parts in ARTICULATED_CLASSES.items() for p in parts)
"""Global part label -> ``"class/part"``."""

CLASS_PART_LABELS = tuple(tuple(range(o, o + len(p))) for o, p in zip(PART_OFFSETS, ARTICULATED_CLASSES.values()))

_ROTATE = ("so3", "z", "none")
_DEFAULT_RANGE = (math.radians(30.0), math.radians(75.0))
_PROPORTION = 0.2  # each dimension of each part label is stretched by U(1 - p, 1 + p)
_TRANSLATION = 0.5

_X, _Y, _Z = np.eye(3)

# the kinematic trees: per instance (part label index, parent instance or -1, joint axes)
_TREES = {
    "figure": ((0, -1, ()), (1, 0, (_Z,)), (2, 0, (_Y, _Z)), (2, 0, (_Y, _Z)), (3, 0, (_X,)), (3, 0, (_X,))),
    "knife": ((0, -1, ()), (1, 0, (_Z,))),
    "lamp": ((0, -1, ()), (1, 0, (_X,)), (2, 1, (_Y,))),
    "robot": ((0, -1, ()), (1, 0, (_X,)), (2, 1, (_X,)), (3, 2, (_Y,))),
}

NUM_JOINTS = max(sum(len(axes) for _, _, axes in tree) for tree in _TREES.values())
MAX_PARTS = max(len(tree) for tree in _TREES.values())


def _rotation(axis: np.ndarray, angle: float) -> np.ndarray:
    """Rotation by ``angle`` about the unit ``axis`` (Rodrigues)."""
    k = np.array([[0.0, -axis[2], axis[1]], [axis[2], 0.0, -axis[0]], [-axis[1], axis[0], 0.0]])
    return np.eye(3) + math.sin(angle) * k + (1.0 - math.cos(angle)) * (k @ k)


def _transform(mesh, R=None, t=(0.0, 0.0, 0.0)):
    T = np.eye(4)
    if R is not None:
        T[:3, :3] = R
    T[:3, 3] = t
    mesh.apply_transform(T)
    return mesh


def _geometry(name: str, rng: np.random.Generator):
    """The parts of one random instance of class ``name``: per instance of ``_TREES[name]`` the
    mesh in its own frame (trimesh) and the joint point (3,) in its parent's frame (zeros for the
    root). The proportions are drawn from ``rng`` (one factor per dimension and part label)."""
    import trimesh.creation as c

    def dims(*nominal):
        return np.asarray(nominal) * rng.uniform(1 - _PROPORTION, 1 + _PROPORTION, size=len(nominal))

    half_pi = math.pi / 2
    zero = np.zeros(3)
    if name == "figure":
        W, D, H = dims(0.44, 0.24, 0.62)
        ax, ay, az = dims(0.11, 0.16, 0.13)
        ra, la = dims(0.045, 0.5)
        rl, ll = dims(0.065, 0.64)
        torso = c.box(extents=(W, D, H))
        head = c.icosphere(subdivisions=2, radius=1.0)
        head.apply_scale((ax, ay, az))
        head.apply_translation((0, 0, az + 0.02))  # sits on the torso: turning about z keeps it there
        out = [(torso, zero), (head, np.array([0.0, 0.0, H / 2]))]
        # the arm's near cap is centred at the shoulder, one arm radius off the torso's side: for
        # raise and swing angles below 90 degrees the arm stays outside the torso
        for s in (1.0, -1.0):
            arm = c.capsule(height=la, radius=ra, count=(12, 12))
            _transform(arm, _rotation(_Y, s * half_pi), (s * la / 2, 0.0, 0.0))
            out.append((arm, np.array([s * (W / 2 + ra), 0.0, H / 2 - ra - 0.03])))
        # the leg's top face hangs one leg radius below the torso: swings below 90 degrees keep it out
        for s in (1.0, -1.0):
            leg = c.cylinder(radius=rl, height=ll, sections=24)
            leg.apply_translation((0, 0, -ll / 2))
            out.append((leg, np.array([s * W / 4, 0.0, -H / 2 - rl])))
        return out
    if name == "knife":
        rh, lh = dims(0.08, 0.9)
        lb, wb, tb = dims(0.85, 0.2, 0.03)
        handle = c.capsule(height=lh, radius=rh, count=(12, 12))
        _transform(handle, _rotation(_Y, half_pi), (-lh / 2, 0.0, 0.0))
        blade = c.box(extents=(lb, wb, tb))
        blade.apply_translation((lb / 2, 0.0, 0.0))
        # the blade folds in its plane about z; its near edge is half a blade width past the handle's tip
        return [(handle, zero), (blade, np.array([rh + wb / 2, 0.0, 0.0]))]
    if name == "lamp":
        rb, hb = dims(0.4, 0.09)
        ra, la = dims(0.032, 0.95)
        rs, hs = dims(0.23, 0.36)
        base = c.cylinder(radius=rb, height=hb, sections=32)
        base.apply_translation((0, 0, hb / 2))
        arm = c.cylinder(radius=ra, height=la, sections=16)
        arm.apply_translation((0, 0, la / 2))
        shade = c.cone(radius=rs, height=hs, sections=32)  # base at z = 0, apex at z = hs: flip it
        _transform(shade, _rotation(_X, math.pi), (0.0, 0.0, hs))  # apex at the joint, opening along +z
        return [(base, zero), (arm, np.array([0.0, 0.0, hb + ra])), (shade, np.array([0.0, 0.0, la + ra]))]
    if name == "robot":
        rb, hb = dims(0.21, 0.18)
        wu, du, lu = dims(0.11, 0.11, 0.5)
        rf, lf = dims(0.035, 0.44)
        R, r = dims(0.08, 0.022)
        base = c.cylinder(radius=rb, height=hb, sections=32)
        base.apply_translation((0, 0, hb / 2))
        upper = c.box(extents=(wu, du, lu))
        upper.apply_translation((0, 0, lu / 2))
        fore = c.capsule(height=lf, radius=rf, count=(12, 12))
        fore.apply_translation((0, 0, lf / 2))  # near cap centred at the elbow
        grip = c.torus(major_radius=R, minor_radius=r, major_sections=24, minor_sections=12)
        # the ring stands in the yz-plane (axis x) beyond the wrist; the wrist turns it about y
        _transform(grip, _rotation(_Y, half_pi), (0.0, 0.0, R + r + 0.02))
        return [(base, zero), (upper, np.array([0.0, 0.0, hb + max(wu, du) / 2])),
                (fore, np.array([0.0, 0.0, lu + rf])), (grip, np.array([0.0, 0.0, lf + rf]))]
    raise AssertionError(name)  # pragma: no cover - names are checked by the caller


def _pose(name: str, joints, angles: np.ndarray):
    """Per-instance rigid motions ``(R (K, 3, 3), t (K, 3))`` of class ``name`` in its own frame for
    the joint points ``joints`` (K, 3) and the angles (J_c,), composed down the tree."""
    tree = _TREES[name]
    Rs, ts, k = [], [], 0
    for (_, parent, axes), joint in zip(tree, joints):
        if parent < 0:
            Rs.append(np.eye(3))
            ts.append(np.zeros(3))
            continue
        Rj = np.eye(3)
        for axis in axes:
            Rj = Rj @ _rotation(axis, float(angles[k]))
            k += 1
        Rs.append(Rs[parent] @ Rj)
        ts.append(Rs[parent] @ joint + ts[parent])
    return np.stack(Rs), np.stack(ts)


def _sample(name: str, rng: np.random.Generator, num_points: int, angle_range, rotate: str, noise: float,
            min_part_points: int) -> dict:
    """One sample of class ``name`` (steps 1-5 of the module docstring), as a dict of numpy arrays:
    ``pos`` (P, 3) final points, ``clean`` (P, 3) before the noise, ``local`` (P, 3) the points in
    their part's own frame, ``instance`` (P,), ``label`` (P,) part label within the class, ``R``
    (K, 3, 3) and ``t`` (K, 3) the final rigid motion of each instance (``clean = R[k] local + t[k]``
    for the points of instance ``k``), ``angles`` (J_c,), ``meshes`` (the K local trimesh parts) and
    ``joints`` (K, 3), each instance's joint point in its parent's frame."""
    import trimesh

    from geodl.groups import random_rotation

    tree = _TREES[name]
    parts = _geometry(name, rng)
    meshes = [m for m, _ in parts]
    lo, hi = angle_range
    nj = sum(len(axes) for _, _, axes in tree)
    angles = rng.uniform(lo, hi, size=nj) * rng.choice((-1.0, 1.0), size=nj)
    R, t = _pose(name, [j for _, j in parts], angles)
    areas = np.array([m.area for m in meshes])
    k = len(meshes)
    counts = min_part_points + rng.multinomial(num_points - k * min_part_points, areas / areas.sum())
    local = np.concatenate([trimesh.sample.sample_surface(m, int(n), seed=rng)[0] for m, n in zip(meshes, counts)])
    instance = np.repeat(np.arange(k), counts)
    perm = rng.permutation(num_points)
    local, instance = local[perm], instance[perm]
    posed = np.einsum("pij,pj->pi", R[instance], local) + t[instance]
    centre = posed.mean(0)
    if rotate == "so3":
        g = torch.Generator().manual_seed(int(rng.integers(2**62)))
        G = random_rotation(generator=g, dtype=torch.float64).numpy()
    elif rotate == "z":
        G = _rotation(_Z, rng.uniform(0.0, 2 * math.pi))
    else:
        G = np.eye(3)
    shift = rng.normal(0.0, _TRANSLATION, size=3) if rotate != "none" else np.zeros(3)
    R = G @ R
    t = (t - centre) @ G.T + shift
    clean = (posed - centre) @ G.T + shift
    pos = clean + rng.normal(0.0, noise, size=clean.shape) if noise > 0 else clean
    label = np.array([tree[i][0] for i in range(k)])[instance]
    return {"pos": pos, "clean": clean, "local": local, "instance": instance, "label": label, "R": R, "t": t,
            "angles": angles, "meshes": meshes, "joints": np.stack([j for _, j in parts])}


def _check_range(joint_range):
    if joint_range is None:
        return _DEFAULT_RANGE
    if not isinstance(joint_range, (tuple, list)) or len(joint_range) != 2:
        raise TypeError(f"joint_range: expected a pair (a, b) of angles in radians, got {joint_range!r}")
    a = check_number("joint_range", joint_range[0])
    b = check_number("joint_range", joint_range[1])
    if not 0.0 <= a < b <= math.pi:
        raise ValueError(f"joint_range: expected 0 <= a < b <= pi (radians), got {joint_range!r}")
    return float(a), float(b)


class ArticulatedShapes(_StackedClouds):
    """Seeded point clouds of articulated :data:`ARTICULATED_CLASSES` objects with part labels.

    Every part instance is moved by its own rigid motion about its joint (the pose), then the
    whole shape by a global rigid motion; the test split's joint angles lie outside the training
    range. See the module docstring for the parts, the joints and the generator.

    Parameters
    ----------
    split : str
        "train", "val" or "test": ``|θ| ~ U(0, a)`` for "train" and "val", ``U(a, b)`` for "test";
        each split is drawn from its own seeds.
    num_points : int
        Points per cloud (at least ``min_part_points`` times the largest number of part instances,
        6 for the figure).
    per_class : int
        Clouds per class (>= 1), ordered by class then index.
    seed : int
        Seed (>= 0).
    noise : float
        Standard deviation of the Gaussian noise on the points (>= 0; the objects have radius about 1).
    joint_range : (float, float), optional
        ``(a, b)`` in radians with ``0 <= a < b <= pi``; default ``(radians(30), radians(75))``.
        Beyond 75 degrees parts may touch or enter one another.
    rotate : str
        The global motion: "so3" (Haar-random rotation), "z" (about z) or "none"; a random
        translation (standard deviation 0.5) except with "none".
    min_part_points : int
        Points at least on every part instance (>= 1).

    Attributes
    ----------
    classes : tuple of str
        The class names (``tuple(ARTICULATED_CLASSES)``).
    part_labels, part_offsets : tuple
        :data:`PART_LABELS`, :data:`PART_OFFSETS`.
    class_part_labels : tuple of tuple of int
        The global part labels of each class.
    pos : torch.Tensor
        ``(len, num_points, 3)`` float32.
    y : torch.Tensor
        ``(len,)`` int64 class labels.
    part : torch.Tensor
        ``(len, num_points)`` int64 global part labels.
    instance : torch.Tensor
        ``(len, num_points)`` int64 part instance within its shape (``0 .. num_parts - 1``; the
        figure's two arms are two instances of one label).
    centre : torch.Tensor
        ``(len, num_points, 3)`` float32, the centroid of the point's part instance.
    num_parts : torch.Tensor
        ``(len,)`` int64 part instances per shape.
    joint_angles : torch.Tensor
        ``(len, NUM_JOINTS)`` float32 radians in the order of the tree, NaN-padded.

    Items
    -----
    ``dataset[i]`` is a ``torch_geometric.data.Data`` with ``pos`` (num_points, 3), ``y`` (1,),
    ``part`` (num_points,), ``instance`` (num_points,), ``centre`` (num_points, 3) and
    ``num_parts`` (1,).

    Examples
    --------
    >>> from geodl.data import ArticulatedShapes
    >>> ds = ArticulatedShapes("test", num_points=128, per_class=2, seed=0)
    >>> len(ds), ds.classes, ds.class_part_labels[2]
    (8, ('figure', 'knife', 'lamp', 'robot'), (6, 7, 8))
    >>> d = ds[4]
    >>> d.pos.shape, d.y, d.num_parts, sorted(set(d.part.tolist())), ds.part_labels[8]
    (torch.Size([128, 3]), tensor([2]), tensor([3]), [6, 7, 8], 'lamp/shade')
    >>> a = ds.joint_angles[4]
    >>> bool((a[:2].abs() >= ds.joint_range[0]).all()), bool(a[2:].isnan().all())
    (True, True)
    """

    classes = tuple(ARTICULATED_CLASSES)
    part_labels = PART_LABELS
    part_offsets = PART_OFFSETS
    class_part_labels = CLASS_PART_LABELS

    _point_fields = ("part", "instance", "centre")
    _cloud_fields = ("num_parts",)

    def __init__(self, split: str = "train", *, num_points: int = 512, per_class: int = 100, seed: int = 0,
                 noise: float = 0.01, joint_range=None, rotate: str = "so3", min_part_points: int = 16):
        self.split = check_choice("split", split, _SPLITS)
        self.rotate = check_choice("rotate", rotate, _ROTATE)
        self.min_part_points = check_int("min_part_points", min_part_points, min=1)
        self.num_points = check_int("num_points", num_points, min=1)
        if self.num_points < MAX_PARTS * self.min_part_points:
            raise ValueError(f"num_points: expected at least min_part_points x {MAX_PARTS} (the part instances of "
                             f"the largest class) = {MAX_PARTS * self.min_part_points}, got {self.num_points}")
        self.per_class = check_int("per_class", per_class, min=1)
        self.seed = check_int("seed", seed, min=0)
        self.noise = float(check_number("noise", noise, nonnegative=True))
        self.joint_range = _check_range(joint_range)
        a, b = self.joint_range
        angle_range = (a, b) if split == "test" else (0.0, a)
        total = self.per_class * len(self.classes)
        check_alloc("num_points", f"{self.num_points} (x {total} clouds, per_class={self.per_class})",
                    total * self.num_points, 16, torch.float64, "cpu")
        pos, part, inst, centre, nparts = [], [], [], [], []
        angles = np.full((total, NUM_JOINTS), np.nan)
        code = _SPLITS.index(split)
        for c, name in enumerate(self.classes):
            for i in range(self.per_class):
                rng = np.random.default_rng([self.seed, code, c, i])
                s = _sample(name, rng, self.num_points, angle_range, self.rotate, self.noise, self.min_part_points)
                k = len(s["meshes"])
                sums = np.zeros((k, 3))
                np.add.at(sums, s["instance"], s["pos"])
                means = sums / np.bincount(s["instance"], minlength=k)[:, None]
                pos.append(s["pos"])
                part.append(PART_OFFSETS[c] + s["label"])
                inst.append(s["instance"])
                centre.append(means[s["instance"]])
                nparts.append(k)
                angles[c * self.per_class + i, :len(s["angles"])] = s["angles"]
        self.pos = torch.from_numpy(np.stack(pos)).float()
        self.y = torch.arange(len(self.classes)).repeat_interleave(self.per_class)
        self.part = torch.from_numpy(np.stack(part)).long()
        self.instance = torch.from_numpy(np.stack(inst)).long()
        self.centre = torch.from_numpy(np.stack(centre)).float()
        self.num_parts = torch.tensor(nparts, dtype=torch.int64)
        self.joint_angles = torch.from_numpy(angles).float()

    def __repr__(self) -> str:
        return (f"ArticulatedShapes({self.split!r}, num_points={self.num_points}, per_class={self.per_class}, "
                f"classes={len(self.classes)}, rotate={self.rotate!r}, seed={self.seed})")
