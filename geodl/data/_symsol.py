"""SYMSOL (the symmetric solids of Murphy et al., "Implicit Representation of Probability
Distributions on the Rotation Manifold", ICML 2021) from a local folder; never downloaded.

Layout (the ``symsol_dataset.zip`` release that ``tensorflow_datasets`` ``symmetric_solids``
unpacks)::

    symsol/
        train/
            rotations.npz          one entry per shape name
            images/tet_00000.png   {shape}_{index:05d}.png, 224 x 224 RGB
                   ...
        test/
            rotations.npz
            images/...

What is confirmed, and where. The ``tensorflow_datasets`` builder ``symmetric_solids`` (its catalog
page and ``symmetric_solids.py``) reads ``train/rotations.npz`` and ``test/rotations.npz`` with
``np.load``, one entry per shape name, and the images ``{split}/images/*.png`` named
``{shape}_{index}.png``, 224 x 224 x 3; for image ``i`` of a shape it takes ``rotations[shape][i, 0]``
as the rendering rotation (``rotation``) and ``rotations[shape][i]`` as the set of equivalent rotations
(``rotations_equivalent``), **in both splits**: an entry is ``(num_images, S, 3, 3)``. The shape
names and their label indices are ``tet, cube, icosa, cone, cyl`` (SYMSOL I) and ``tetX, cylO,
sphereX`` (SYMSOL II), 0 to 7 in that order (:attr:`Symsol.SHAPES`); 50,000 renderings per shape
(360,000 train and 40,000 test images, so 45,000 / 5,000 per shape). The symmetry sets have 12
(tet), 24 (cube), 60 (icosa), 360 (cone) and 720 (cyl) rotations; the marked SYMSOL II shapes
carry only the rendering rotation (``S = 1``). IPDF's ``load_symsol`` trains on the first rotation
(``rotation``) and evaluates on the whole set (``rotations_equivalent``). The PyTorch loaders of later
SYMSOL papers read the same npz the same way (``(n, m_sym, 3, 3)``, the first the rendering
rotation) with ``{shape}_{index:05d}.png`` as the image name.

What this loader accepts beyond that: an entry of shape ``(num_images, 3, 3)`` is read as one
rotation per image (``S = 1``); the image size is checked against ``image_size`` (224 by default,
``None`` for any size). Every rotation must be a rotation matrix (``|R^T R - I|`` and
``|det R - 1|`` at most ``1e-4``) with finite entries. Problems are ``ValueError`` naming the file
(or the argument); the npz entry headers are read (and the sizes they announce checked against the
file and the memory) before any array is allocated, and only the first ``limit`` images of each
entry are read.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from geodl._checks import check_item_index, check_memory, check_name_selection, check_path, check_positive_int

__all__ = ["Symsol"]

SHAPES = ("tet", "cube", "icosa", "cone", "cyl", "tetX", "cylO", "sphereX")
SYMSOL_I = SHAPES[:5]
SYMSOL_II = SHAPES[5:]
SPLITS = ("train", "test")
ROTATION_TOL = 1e-4
_CHUNK = 1 << 18  # rotations checked at a time (float64 temporaries of 9 values each)


def _error(path, msg: str) -> ValueError:
    return ValueError(f"{path}: {msg}")


def _entry_header(npz: Path, zf: zipfile.ZipFile, member: str):
    """``(opened member, shape, fortran_order, dtype)`` of one ``.npy`` member, data not yet read."""
    f = zf.open(member)
    try:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        elif version in ((2, 0), (3, 0)):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise ValueError(f"unsupported .npy version {version}")
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, SyntaxError) as e:
        f.close()
        raise _error(npz, f"entry {member[:-4]!r} is not a readable .npy array ({e})") from None
    return f, shape, fortran, dtype


def _read_entry(npz: Path, zf: zipfile.ZipFile, member: str, key: str, limit: int | None) -> np.ndarray:
    """The rotations of one shape as ``(n, S, 3, 3)`` float64, ``n = min(num_images, limit)``."""
    f, shape, fortran, dtype = _entry_header(npz, zf, member)
    with f:
        if dtype.kind != "f" or dtype.hasobject:
            raise _error(npz, f"entry {key!r} has dtype {dtype}; expected floating-point rotation matrices")
        if len(shape) == 3 and shape[1:] == (3, 3):
            shape4 = (shape[0], 1, 3, 3)
        elif len(shape) == 4 and shape[2:] == (3, 3):
            shape4 = tuple(shape)
        else:
            raise _error(npz, f"entry {key!r} has shape {tuple(shape)}; expected (num_images, S, 3, 3) (every "
                         f"equivalent rotation of each image) or (num_images, 3, 3)")
        num, s = shape4[0], shape4[1]
        if num == 0 or s == 0:
            raise _error(npz, f"entry {key!r} has shape {tuple(shape)}: no rotations")
        n = num if limit is None or fortran else min(num, limit)
        count = n * s * 9
        check_memory("root", npz, count * (dtype.itemsize + 8) * 2, "cpu",
                     what=f"the {count // 9} rotations of entry {key!r}")
        info = zf.getinfo(member)
        if info.compress_type == zipfile.ZIP_STORED and count * dtype.itemsize > info.file_size:
            raise _error(npz, f"entry {key!r} is truncated: its header announces shape {tuple(shape)} "
                         f"({num * s * 9 * dtype.itemsize} bytes), the entry holds {info.file_size} bytes")
        try:
            data = f.read(count * dtype.itemsize)
        except (OSError, EOFError, zipfile.BadZipFile, ValueError) as e:
            raise _error(npz, f"entry {key!r} cannot be read ({e})") from None
    if len(data) < count * dtype.itemsize:
        raise _error(npz, f"entry {key!r} is truncated: its header announces shape {tuple(shape)}, the entry "
                     f"ends after {len(data)} bytes of data")
    a = np.frombuffer(data, dtype=dtype, count=count)
    if fortran:
        a = a.reshape(tuple(shape)[::-1]).transpose()
    a = a.reshape(num if fortran else n, s, 3, 3)
    if limit is not None:
        a = a[:limit]
    return a.astype(np.float64)


def _check_rotations(npz: Path, key: str, R: np.ndarray) -> None:
    flat = R.reshape(-1, 3, 3)
    finite = np.isfinite(flat).all(axis=(1, 2))
    if not finite.all():
        i = int(np.argmin(finite))
        raise _error(npz, f"entry {key!r}: image {i // R.shape[1]}, rotation {i % R.shape[1]} has a non-finite "
                     f"entry (NaN or inf)")
    eye = np.eye(3)
    for lo in range(0, flat.shape[0], _CHUNK):
        c = flat[lo:lo + _CHUNK]
        ortho = np.abs(np.swapaxes(c, 1, 2) @ c - eye).max(axis=(1, 2))
        det = np.linalg.det(c)
        bad = np.flatnonzero((ortho > ROTATION_TOL) | (np.abs(det - 1) > ROTATION_TOL))
        if bad.size:
            i = lo + int(bad[0])
            j = i - lo
            raise _error(npz, f"entry {key!r}: image {i // R.shape[1]}, rotation {i % R.shape[1]} is not a rotation "
                         f"matrix: max |R^T R - I| = {ortho[j]:.3g}, det R = {det[j]:.6g} (expected orthonormal "
                         f"with det +1 within {ROTATION_TOL})")


def _shapes_arg(shapes) -> list[str] | None:
    if shapes is None:
        return None
    return check_name_selection("shapes", shapes, SHAPES, item="shape", what="the SYMSOL shapes",
                                none_hint="every shape of the npz", aliases={"symsol1": SYMSOL_I, "symsol2": SYMSOL_II})


def _image_size_arg(image_size) -> int | None:
    if image_size is None:
        return None
    return check_positive_int("image_size", image_size)


def read_symsol_png(path, image_size: int | None = 224) -> torch.Tensor:
    """One SYMSOL image as ``(3, H, W)`` float32 in [0, 1]; a ValueError naming the file when it does
    not decode, is not RGB or not ``image_size`` x ``image_size``."""
    from geodl._optional import require

    Image = require("PIL.Image", "Symsol")
    try:
        with Image.open(path) as im:
            if im.format != "PNG":
                raise _error(path, f"not a PNG image (PIL reads it as {im.format})")
            if im.mode != "RGB":
                raise _error(path, f"image mode {im.mode}; SYMSOL images are RGB")
            if image_size is not None and im.size != (image_size, image_size):
                raise _error(path, f"image size {im.size[0]} x {im.size[1]}; expected {image_size} x {image_size} "
                             f"(pass image_size=None to accept any size)")
            im.load()
            a = np.asarray(im, dtype=np.uint8)
    except FileNotFoundError:
        raise _error(path, "the image is missing") from None
    except ValueError:
        raise
    except Exception as e:  # PIL: UnidentifiedImageError, "image file is truncated", broken chunks, zlib
        raise _error(path, f"the PNG does not decode ({type(e).__name__}: {e})") from None
    return torch.from_numpy(a.transpose(2, 0, 1).astype(np.float32) / 255)


class Symsol(Dataset):
    """SYMSOL images with the ground-truth rotation set of each, from a local folder.

    Parameters
    ----------
    root : str or os.PathLike
        The folder holding ``train/`` and ``test/`` (the unpacked ``symsol_dataset.zip``), or its
        parent holding ``symsol/``.
    split : {"train", "test"}
    shapes : None, str or list of str, optional
        Shape names from :attr:`SHAPES`, or ``"symsol1"`` (tet, cube, icosa, cone, cyl) /
        ``"symsol2"`` (tetX, cylO, sphereX); default every shape of the npz.
    limit : int, optional
        Keep the first ``limit`` images of each shape (only these rotations are read).
    image_size : int or None
        The side the PNGs must have (224 in the release); ``None`` accepts any size.

    Attributes
    ----------
    SHAPES : tuple of str
        The eight shape names; the shape index of an item is its position here (the
        ``label_shape`` of ``tensorflow_datasets``).
    shapes : list of str
        The shapes read, in the order of :attr:`SHAPES`.
    rotations : dict of str to torch.Tensor
        ``{shape: (num_images, S, 3, 3) float32}``; ``rotations[shape][i, 0]`` is the rendering
        rotation of image ``i``, the rest its equivalents under the shape's symmetry.
    items : list of (str, int)
        ``(shape, image index)`` of each item, shape by shape.
    root : pathlib.Path
        The split folder read.

    Items are ``(image, rotations, shape_index)``: ``(3, H, W)`` float32 in [0, 1] (the PNG, read
    when the item is accessed), ``(S, 3, 3)`` float32, and an int64 scalar tensor. ``S`` differs
    between shapes, so a batch that mixes shapes needs a collate function of its own (or one
    ``Symsol`` per shape).

    Raises
    ------
    ValueError
        ``root`` or the split folder missing; ``rotations.npz`` missing or not an npz; an entry that
        is not a known shape name, a requested shape that the npz lacks; an entry of the wrong
        shape or dtype, non-finite, or not rotation matrices; the ``images`` folder or an image
        missing (at construction); an image that does not decode, is not RGB or has the wrong size
        (when read). The message names the file or the argument.
    TypeError
        An argument of the wrong type.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> import numpy as np
    >>> from PIL import Image
    >>> d = pathlib.Path(tempfile.mkdtemp()) / "symsol"
    >>> (d / "test" / "images").mkdir(parents=True)
    >>> R = np.stack([np.eye(3), np.diag([1.0, -1.0, -1.0])])[None]      # 1 image, S = 2
    >>> np.savez(d / "test" / "rotations.npz", cyl=R)
    >>> Image.new("RGB", (8, 8), (255, 0, 0)).save(d / "test" / "images" / "cyl_00000.png")
    >>> ds = Symsol(d, "test", image_size=8)
    >>> image, rotations, shape = ds[0]
    >>> len(ds), image.shape, image[:, 0, 0].tolist(), rotations.shape, Symsol.SHAPES[int(shape)]
    (1, torch.Size([3, 8, 8]), [1.0, 0.0, 0.0], torch.Size([2, 3, 3]), 'cyl')
    """

    SHAPES = SHAPES

    def __init__(self, root, split: str = "train", *, shapes=None, limit=None, image_size=224):
        root = check_path("root", root).expanduser()
        if not isinstance(split, str):
            raise TypeError(f"split: expected 'train' or 'test', got {type(split).__name__}")
        if split not in SPLITS:
            raise ValueError(f"split: expected 'train' or 'test', got {split!r}")
        want = _shapes_arg(shapes)
        limit = None if limit is None else check_positive_int("limit", limit)
        self.image_size = _image_size_arg(image_size)
        if not root.exists():
            raise ValueError(f"root: {root} does not exist (SYMSOL is never downloaded: unpack "
                             f"symsol_dataset.zip and pass the folder holding train/ and test/)")
        if not root.is_dir():
            raise ValueError(f"root: {root} is not a folder")
        folder = root / split
        if not folder.is_dir() and (root / "symsol" / split).is_dir():
            folder = root / "symsol" / split
        if not folder.is_dir():
            raise ValueError(f"root: no {split}/ folder in {root} (expected {folder}/rotations.npz and "
                             f"{folder}/images/)")
        npz = folder / "rotations.npz"
        if not npz.is_file():
            raise ValueError(f"{npz}: the rotations file is missing")
        self.rotations = self._read_npz(npz, want, limit)
        self.shapes = list(self.rotations)
        images = folder / "images"
        if not images.is_dir():
            raise ValueError(f"{images}: the images folder is missing")
        present = {e.name for e in os.scandir(images)}
        self.items = []
        for s in self.shapes:
            for i in range(self.rotations[s].shape[0]):
                name = f"{s}_{i:05d}.png"
                if name not in present:
                    raise ValueError(f"{images / name}: the image is missing ({npz.name} holds "
                                     f"{self.rotations[s].shape[0]} rotation sets of {s!r})")
                self.items.append((s, i))
        self.root = folder
        self.split = split

    @staticmethod
    def _read_npz(npz: Path, want, limit) -> dict:
        try:
            zf = zipfile.ZipFile(npz)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
            raise _error(npz, f"not an npz archive ({e})") from None
        with zf:
            members = [m for m in zf.namelist() if not m.endswith("/")]
            keys = {}
            for m in members:
                if not m.endswith(".npy"):
                    raise _error(npz, f"member {m!r} is not a .npy array; an npz keyed by shape name is expected")
                keys[m[:-4]] = m
            unknown = [k for k in keys if k not in SHAPES]
            if unknown:
                raise _error(npz, f"unknown shape name{'s' if len(unknown) > 1 else ''} "
                             f"{', '.join(map(repr, unknown))}; the entries must be named after the SYMSOL "
                             f"shapes {', '.join(SHAPES)}")
            if not keys:
                raise _error(npz, "the npz holds no rotations")
            if want is not None:
                missing = [s for s in want if s not in keys]
                if missing:
                    raise ValueError(f"shapes: {', '.join(map(repr, missing))} not in {npz} (it holds "
                                     f"{', '.join(sorted(keys, key=SHAPES.index))})")
            out = {}
            for s in want if want is not None else sorted(keys, key=SHAPES.index):
                R = _read_entry(npz, zf, keys[s], s, limit)
                _check_rotations(npz, s, R)
                out[s] = torch.from_numpy(R.astype(np.float32))
        return out

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index):
        i = check_item_index(index, len(self.items), "images")
        shape, k = self.items[i]
        image = read_symsol_png(self.root / "images" / f"{shape}_{k:05d}.png", self.image_size)
        return image, self.rotations[shape][k], torch.tensor(SHAPES.index(shape))

    def __repr__(self) -> str:
        return f"Symsol(split='{self.split}', images={len(self)}, shapes={self.shapes}, root='{self.root}')"
