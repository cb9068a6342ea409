"""ModelNet10/40 (Wu et al. 2015) from a local folder in the official layout; never downloaded.

Layout (the ``ModelNet10.zip`` / ``ModelNet40.zip`` archives unpack to it)::

    ModelNet40/
        airplane/
            train/airplane_0001.off ... airplane_0626.off
            test/airplane_0627.off ...
        bathtub/
        ...

The class folders must be exactly one of the official lists (:data:`MODELNET10_CLASSES`,
:data:`MODELNET40_CLASSES`): a missing or an extra class folder is a ``ValueError`` naming it.
Hidden entries (names starting with ``.``, e.g. ``.DS_Store``) and ``__MACOSX`` folders are
ignored, and so are plain files beside the class folders (e.g. a ``README.txt``) and anything in
a split folder that is not an ``.off`` file. Files are read in a sorted, deterministic order
(class by class in the order of the list, then by file name); the label of a shape is the index of
its class in the list.

Each mesh is read with :func:`geodl.data.read_off` (polygons fan-triangulated) and ``num_points``
points are drawn on its surface, area-weighted, with ``trimesh.sample.sample_surface``; the
random generator of a file is seeded from ``seed`` and the file's path relative to the root
(``<class>/<split>/<name>``), so a file's samples do not depend on which other files are present.
The optional normals are the unit face normals of the sampled triangles (the winding of the file
decides their sign). The points are the raw mesh coordinates (not centred or scaled).

The samples are cached in ``geodl.data.default_root() / "modelnet"``, one file per (version,
split, num_points, normals, seed, cache format, fingerprint of the source files: relative names,
sizes and modification times), written atomically and read with ``torch.load(weights_only=True)``;
a cache file that does not load or does not match is rebuilt with a ``RuntimeWarning``. Changing a
source file changes the fingerprint, hence the cache file used. Old cache files are never deleted
(``geodl data list`` shows them; delete the folder to reclaim the space).
"""

from __future__ import annotations

import hashlib
import json
import warnings
import zlib
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from geodl._checks import check_item_index, check_choice, check_int, check_memory, check_path, check_positive_int
from geodl._io import atomic_torch_save
from geodl.data._off import read_off

__all__ = ["ModelNet", "MODELNET10_CLASSES", "MODELNET40_CLASSES"]

MODELNET10_CLASSES = ("bathtub", "bed", "chair", "desk", "dresser", "monitor", "night_stand", "sofa", "table",
                      "toilet")
MODELNET40_CLASSES = (
    "airplane", "bathtub", "bed", "bench", "bookshelf", "bottle", "bowl", "car", "chair", "cone", "cup", "curtain",
    "desk", "door", "dresser", "flower_pot", "glass_box", "guitar", "keyboard", "lamp", "laptop", "mantel",
    "monitor", "night_stand", "person", "piano", "plant", "radio", "range_hood", "sink", "sofa", "stairs", "stool",
    "table", "tent", "toilet", "tv_stand", "vase", "wardrobe", "xbox",
)
_LISTS = {"10": MODELNET10_CLASSES, "40": MODELNET40_CLASSES}
CACHE_FORMAT = 1  # bump when the sampling or the cache layout changes
_SAMPLE_BYTES = 256  # working memory of trimesh's sampler per point (float64 temporaries)


def _hidden(name: str) -> bool:
    return name.startswith(".") or name == "__MACOSX"


def _version_arg(version):
    if version is None:
        return None
    if isinstance(version, bool) or not isinstance(version, (str, int)):
        raise TypeError(f"version: expected None, '10' or '40', got {type(version).__name__} ({version!r})")
    v = str(version)
    if v not in _LISTS:
        raise ValueError(f"version: expected None, '10' or '40', got {version!r}")
    return v


def _bool_arg(name: str, value) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}: expected a bool, got {type(value).__name__} ({value!r})")
    return bool(value)


def _class_folders(root: Path) -> list[str]:
    return sorted(e.name for e in root.iterdir() if e.is_dir() and not _hidden(e.name))


def _resolve_root(root: Path, version: str | None) -> Path:
    """``root`` itself, or its ``ModelNet<version>`` child when ``root`` is the folder the archive
    was unpacked into."""
    if not root.exists():
        raise ValueError(f"root: {root} does not exist (ModelNet is never downloaded: unpack "
                         f"ModelNet10.zip or ModelNet40.zip and pass the ModelNet10/ or ModelNet40/ folder)")
    if not root.is_dir():
        raise ValueError(f"root: {root} is not a folder")
    names = set(_class_folders(root))
    if names & set(MODELNET40_CLASSES):
        return root
    children = [f"ModelNet{v}" for v in (_LISTS if version is None else (version,)) if f"ModelNet{v}" in names]
    if len(children) == 1:
        return root / children[0]
    if len(children) > 1:
        raise ValueError(f"root: {root} holds both ModelNet10/ and ModelNet40/; pass one of them or set version")
    return root


def _detect(root: Path, names: list[str], version: str | None) -> str:
    found = set(names)
    if not found & set(MODELNET40_CLASSES):
        shown = ", ".join(names[:8]) + (", ..." if len(names) > 8 else "") if names else "no folders"
        raise ValueError(f"root: {root} is not a ModelNet folder: expected the class folders of ModelNet10 "
                         f"or ModelNet40 (bathtub/, bed/, chair/, ...), found {shown}")
    if version is None:
        for v, lst in _LISTS.items():
            if found == set(lst):
                return v
        # the closest list: the fewest missing + extra folders (ties: ModelNet40)
        version = min(("40", "10"), key=lambda v: len(found ^ set(_LISTS[v])))
    expected = set(_LISTS[version])
    missing, extra = sorted(expected - found), sorted(found - expected)
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing class folder(s) {', '.join(missing)}")
        if extra:
            parts.append(f"extra folder(s) {', '.join(str(root / e) for e in extra)}")
        raise ValueError(f"root: {root} does not match the ModelNet{version} class list: {'; '.join(parts)} "
                         f"(hidden entries and __MACOSX are ignored; the class folders must be exactly the "
                         f"{len(expected)} official ones)")
    return version


def _scan(root: Path, classes, split: str) -> list[Path]:
    files = []
    for c in classes:
        folder = root / c / split
        if not folder.is_dir():
            raise ValueError(f"root: the class folder {root / c} has no {split}/ folder (expected {folder})")
        files.extend(sorted((p for p in folder.iterdir() if not _hidden(p.name) and p.suffix.lower() == ".off"
                             and p.is_file()), key=lambda p: p.name))
    if not files:
        raise ValueError(f"root: no .off files in the {split}/ folders under {root}")
    return files


def _fingerprint(root: Path, files) -> tuple[list[str], str]:
    rel, h = [], hashlib.sha256()
    for p in files:
        st = p.stat()
        r = p.relative_to(root).as_posix()
        rel.append(r)
        h.update(f"{r}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return rel, h.hexdigest()


def _sample_file(path: Path, rel: str, num_points: int, normals: bool, seed: int):
    import trimesh

    vertices, faces = read_off(path)
    if len(faces) == 0:
        raise ValueError(f"{path}: the mesh has no faces, there is no surface to sample")
    mesh = trimesh.Trimesh(vertices=vertices, faces=faces, process=False, validate=False)
    area = float(mesh.area_faces.sum())
    if not (np.isfinite(area) and area > 0):
        raise ValueError(f"{path}: the mesh has zero total surface area ({len(faces)} degenerate triangles), "
                         f"there is no surface to sample")
    rng = np.random.default_rng([seed, zlib.crc32(rel.encode())])
    points, face_index = trimesh.sample.sample_surface(mesh, num_points, seed=rng)
    pos = torch.as_tensor(np.asarray(points, dtype=np.float32))
    if not normals:
        return pos, None
    a, b, c = (vertices[faces[face_index, k]] for k in range(3))
    n = np.cross(b - a, c - a)
    n /= np.linalg.norm(n, axis=1, keepdims=True)  # sampled faces have positive area
    return pos, torch.as_tensor(n.astype(np.float32))


def _cache_problem(data, key: str, rel: list[str], num_points: int, normals: bool, num_classes: int) -> str | None:
    """Why ``data`` is not the cache of this key, or None."""
    keys = {"format", "key", "files", "pos", "y"} | ({"normal"} if normals else set())
    if not isinstance(data, dict) or set(data) != keys:
        got = sorted(data) if isinstance(data, dict) else type(data).__name__
        return f"expected a dict with the keys {sorted(keys)}, got {got}"
    if data["format"] != CACHE_FORMAT or data["key"] != key:
        return "written for other settings or other source files"
    if data["files"] != rel:
        return "lists other source files"
    m = len(rel)
    for name in ("pos", "normal") if normals else ("pos",):
        t = data[name]
        if not isinstance(t, torch.Tensor) or t.dtype != torch.float32 or tuple(t.shape) != (m, num_points, 3):
            return (f"{name!r} expected float32 of shape {(m, num_points, 3)}, got "
                    f"{getattr(t, 'dtype', type(t).__name__)} {tuple(getattr(t, 'shape', ()))}")
        if not bool(torch.isfinite(t).all()):
            return f"{name!r} holds non-finite values"
    y = data["y"]
    if not isinstance(y, torch.Tensor) or y.dtype != torch.int64 or tuple(y.shape) != (m,):
        return f"'y' expected int64 of shape {(m,)}"
    if m and not (int(y.min()) >= 0 and int(y.max()) < num_classes):
        return f"'y' outside [0, {num_classes})"
    return None


class ModelNet(Dataset):
    """ModelNet10 or ModelNet40 point clouds sampled from the meshes of a local folder.

    Parameters
    ----------
    root : str or os.PathLike
        The ``ModelNet10/`` or ``ModelNet40/`` folder (``<root>/<class>/{train,test}/*.off``), or the
        folder holding it.
    split : {"train", "test"}
    version : {None, "10", "40"}
        ``None``: detected from the class folders (they must equal one of the official lists).
    num_points : int
        Points sampled on each surface (area-weighted), ``>= 1``.
    normals : bool
        Also return the unit face normal at each sampled point.
    seed : int
        Seed of the sampling (``>= 0``); the same seed gives the same points.
    cache : bool
        Read and write the processed samples under ``geodl.data.default_root() / "modelnet"``.
    progress : bool
        A progress bar (tqdm) over the files while sampling.

    Attributes
    ----------
    classes : tuple of str
        The official class list of the version (the label is the index in it).
    version : str
        ``"10"`` or ``"40"``.
    files : list of pathlib.Path
        The ``.off`` files of the split, in the order of the items.
    root : pathlib.Path
        The ``ModelNet<version>`` folder read.
    cache_path : pathlib.Path or None
        The cache file used (``None`` with ``cache=False``).

    Items are PyG ``Data(pos=(num_points, 3) float32, y=(1,) int64[, normal=(num_points, 3) float32])``.

    Raises
    ------
    ValueError
        ``root`` does not exist or is not a ModelNet folder (missing / extra class folders named), a
        file is malformed (named, with the line) or has no surface; a bad ``split``, ``version``,
        ``num_points`` or ``seed``.
    TypeError
        An argument of the wrong type.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from geodl.data import MODELNET10_CLASSES
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> for c in MODELNET10_CLASSES:
    ...     for s in ("train", "test"):
    ...         (d / c / s).mkdir(parents=True)
    ...         _ = (d / c / s / f"{c}_0001.off").write_text("OFF3 1 0\\n0 0 0\\n1 0 0\\n0 1 0\\n3 0 1 2\\n")
    >>> ds = ModelNet(d, "test", num_points=16, normals=True, cache=False, progress=False)
    >>> ds.version, len(ds), ds[3].pos.shape, ds[3].y.tolist(), ds[3].normal[0].abs().tolist()
    ('10', 10, torch.Size([16, 3]), [3], [0.0, 0.0, 1.0])
    """

    def __init__(self, root, split: str = "train", *, version=None, num_points: int = 1024, normals: bool = False,
                 seed: int = 0, cache: bool = True, progress: bool = True):
        root = check_path("root", root).expanduser()
        check_choice("split", split, ("train", "test"))
        version = _version_arg(version)
        num_points = check_positive_int("num_points", num_points)
        normals = _bool_arg("normals", normals)
        seed = check_int("seed", seed, min=0, max=2**63 - 1)
        cache = _bool_arg("cache", cache)
        progress = _bool_arg("progress", progress)
        check_memory("num_points", num_points, num_points * _SAMPLE_BYTES, "cpu", what="the samples of one mesh")

        root = _resolve_root(root, version)
        self.version = _detect(root, _class_folders(root), version)
        self.classes = _LISTS[self.version]
        self.root = root
        self.split, self.num_points, self.normals, self.seed = split, num_points, normals, seed
        self.files = _scan(root, self.classes, split)
        per_item = num_points * 3 * 4 * (2 if normals else 1)
        check_memory("num_points", num_points, len(self.files) * per_item, "cpu",
                     what=f"{len(self.files)} point clouds of {num_points} points")
        labels = {c: i for i, c in enumerate(self.classes)}
        y = torch.tensor([labels[p.parent.parent.name] for p in self.files], dtype=torch.int64)
        rel, fp = _fingerprint(root, self.files)
        settings = {"format": CACHE_FORMAT, "version": self.version, "split": split, "num_points": num_points,
                    "normals": normals, "seed": seed, "files": fp}
        key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()
        self.cache_path = None
        data = None
        if cache:
            from geodl.data._root import default_root

            self.cache_path = (default_root() / "modelnet" / f"modelnet{self.version}_{split}_n{num_points}_"
                               f"{'normals' if normals else 'xyz'}_seed{seed}_{key[:16]}.pt")
            data = self._read_cache(key, rel, y)
        if data is None:
            data = self._build(rel, y, key, progress)
            if cache:
                try:
                    atomic_torch_save(data, self.cache_path)
                except OSError as exc:  # an unwritable data root: go on without the cache
                    warnings.warn(f"{self.cache_path}: could not write the ModelNet cache ({exc}); "
                                  f"continuing without it", RuntimeWarning, stacklevel=2)
        self._pos, self._y = data["pos"], data["y"]
        self._normal = data.get("normal")

    def _read_cache(self, key, rel, y):
        path = self.cache_path
        if not path.exists():
            return None
        try:
            data = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # truncated, garbage, or holding objects weights_only refuses
            problem = f"does not load ({type(exc).__name__})"
        else:
            problem = _cache_problem(data, key, rel, self.num_points, self.normals, len(self.classes))
            if problem is None and not torch.equal(data["y"], y):
                problem = "labels do not match the class folders"
        if problem is None:
            return data
        warnings.warn(f"{path}: {problem}; rebuilding it from the .off files", RuntimeWarning, stacklevel=3)
        return None

    def _build(self, rel, y, key, progress):
        from tqdm import tqdm

        try:
            import trimesh  # noqa: F401
        except ImportError:  # pragma: no cover - trimesh is in the `mesh` extra
            raise ImportError("ModelNet samples the mesh surfaces with trimesh: pip install 'geodl[mesh]'") from None
        m = len(self.files)
        pos = torch.empty(m, self.num_points, 3, dtype=torch.float32)
        normal = torch.empty_like(pos) if self.normals else None
        it = tqdm(range(m), desc=f"ModelNet{self.version} {self.split}", unit="mesh", disable=not progress)
        for i in it:
            p, n = _sample_file(self.files[i], rel[i], self.num_points, self.normals, self.seed)
            pos[i] = p
            if normal is not None:
                normal[i] = n
        data = {"format": CACHE_FORMAT, "key": key, "files": rel, "pos": pos, "y": y}
        if normal is not None:
            data["normal"] = normal
        return data

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index):
        from torch_geometric.data import Data

        i = check_item_index(index, len(self.files), "shapes")
        out = Data(pos=self._pos[i].clone(), y=self._y[i].reshape(1).clone())
        if self._normal is not None:
            out.normal = self._normal[i].clone()
        return out

    def __repr__(self) -> str:
        return (f"ModelNet(version={self.version!r}, split={self.split!r}, shapes={len(self)}, "
                f"num_points={self.num_points}, normals={self.normals}, root='{self.root}')")
