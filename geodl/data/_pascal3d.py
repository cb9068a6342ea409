"""PASCAL3D+ (Xiang et al., WACV 2014; release 1.1) from a local folder; never downloaded.

Layout (``PASCAL3D+_release1.1.zip`` unpacks to it)::

    PASCAL3D+_release1.1/
        Annotations/{category}_pascal/{id}.mat       one .mat per image, a struct ``record``
        Annotations/{category}_imagenet/{id}.mat
        Images/{category}_pascal/{id}.jpg
        Images/{category}_imagenet/{id}.JPEG
        Image_sets/{category}_imagenet_{train,val}.txt          one image id per line
        PASCAL/VOCdevkit/VOC2012/ImageSets/Main/{category}_{train,val}.txt   "<id> <label>" lines

The ``.mat`` files are read with ``scipy.io.loadmat(squeeze_me=True, struct_as_record=False)``:
``record.objects`` is a struct (array) whose elements carry ``class``, ``bbox`` (``[x1, y1, x2, y2]``,
1-based pixels), ``occluded``, ``truncated``, ``difficult`` and a struct ``viewpoint`` with
``azimuth``, ``elevation``, ``theta`` in degrees (and ``distance``, ``focal``, ``px``, ``py``, ...).

The rotation (:func:`pascal3d_rotation`) follows IPDF (Murphy et al., ICML 2021,
``google-research/implicit_pdf``, ``pascal3d/data_loader_eval.py`` and the README's
``load_pascal``): the angles in radians, ``R = Rz(theta) @ Rx(elevation - pi/2) @ Rz(-azimuth)``.
Image2Sphere's loader (after Mohlin et al., NeurIPS 2020) builds the same camera rotation
``Rx(e - pi/2) @ Rz(-a)`` with ``theta`` as the in-plane rotation of the image.

The splits are Image2Sphere's (``src/pascal_dataset.py``, from Mohlin et al.'s code; IPDF used an
internal copy of the data and does not publish its lists): ``train`` is, per category, the ids of
``VOC2012/ImageSets/Main/{category}_train.txt`` whose image is in ``Images/{category}_pascal``, plus
``Image_sets/{category}_imagenet_train.txt`` and ``{category}_imagenet_val.txt``; ``test`` is the
ids of ``VOC2012/ImageSets/Main/{category}_val.txt`` whose image is in ``Images/{category}_pascal``
(PASCAL VOC val, as in IPDF and Image2Sphere).

Objects kept: those of the file's category whose viewpoint is annotated (a ``viewpoint`` struct,
and ``distance`` not 0 where the field exists: PASCAL3D+ leaves unannotated objects with an empty
viewpoint or a zero distance), with a valid box (``x1 < x2`` and ``y1 < y2``), and by default not
occluded, truncated or difficult (the "easy" test objects of IPDF and Image2Sphere; each filter can
be turned off). Image2Sphere keeps only the first object of each file (``first_object_only=True``);
by default every object that passes is an item. Problems are ``ValueError`` naming the file: a list
or an annotation that is missing, a ``.mat`` that does not load or lacks ``record.objects`` or a
field, non-finite angles, an image that is missing or does not decode.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import Dataset

from geodl._checks import check_item_index, check_name_selection, check_number, check_path, check_positive_int

__all__ = ["Pascal3D", "PASCAL3D_CATEGORIES", "pascal3d_rotation"]

PASCAL3D_CATEGORIES = ("aeroplane", "bicycle", "boat", "bottle", "bus", "car", "chair", "diningtable",
                       "motorbike", "sofa", "train", "tvmonitor")
SPLITS = ("train", "test")
RELEASE = "PASCAL3D+_release1.1"
_VOC_SETS = Path("PASCAL/VOCdevkit/VOC2012/ImageSets/Main")
_IMAGE_EXTS = (".jpg", ".JPEG", ".jpeg", ".JPG")
CONTEXT = 1.166666  # IPDF's widening of the box about its centre
_BILINEAR = 2  # PIL.Image.Resampling.BILINEAR


class Pascal3DObject(NamedTuple):
    """One annotated object: where it comes from and its annotation (angles in degrees)."""
    category: str
    source: str  # "pascal" or "imagenet"
    image_id: str
    annotation: Path
    image: Path
    object_index: int  # position in record.objects
    azimuth: float
    elevation: float
    theta: float
    bbox: tuple  # (x1, y1, x2, y2), 1-based pixels as annotated
    occluded: bool
    truncated: bool
    difficult: bool


def _error(path, msg: str) -> ValueError:
    return ValueError(f"{path}: {msg}")


def _angle(name: str, value) -> torch.Tensor:
    if isinstance(value, bool):
        raise TypeError(f"{name}: expected a number or a tensor of degrees, got bool")
    if isinstance(value, torch.Tensor):
        if not value.is_floating_point():
            value = value.double()
        return value
    if isinstance(value, (int, float, np.integer, np.floating)):
        return torch.tensor(float(value), dtype=torch.float64)
    if isinstance(value, np.ndarray) and value.dtype.kind in "iuf":
        return torch.from_numpy(value.astype(np.float64))
    raise TypeError(f"{name}: expected a number or a tensor of degrees, got {type(value).__name__}")


def pascal3d_rotation(azimuth, elevation, theta) -> torch.Tensor:
    """The rotation of a PASCAL3D+ viewpoint, IPDF's convention:
    ``R = Rz(theta) @ Rx(elevation - pi/2) @ Rz(-azimuth)`` with the angles in radians.

    Parameters
    ----------
    azimuth, elevation, theta : float or torch.Tensor
        Degrees, as the annotations store them; tensors broadcast together.

    Returns
    -------
    torch.Tensor
        ``(..., 3, 3)``: float64 for numbers, the (promoted) floating dtype of tensors.

    Raises
    ------
    ValueError
        A non-finite angle (named), or shapes that do not broadcast.
    TypeError
        An angle that is not a number or a tensor.

    Examples
    --------
    >>> pascal3d_rotation(0.0, 90.0, 0.0).tolist()      # seen from straight above: the identity
    [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
    >>> (pascal3d_rotation(90.0, 0.0, 90.0).round() + 0.0).tolist()   # a = 90, e = 0, theta = 90
    [[0.0, 0.0, -1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]
    """
    from geodl.groups import euler_to_matrix

    a, e, t = _angle("azimuth", azimuth), _angle("elevation", elevation), _angle("theta", theta)
    for name, x in (("azimuth", a), ("elevation", e), ("theta", t)):
        if not torch.isfinite(x).all():
            raise ValueError(f"{name}: non-finite angle (NaN or inf)")
    dtype = torch.promote_types(torch.promote_types(a.dtype, e.dtype), t.dtype)
    try:
        a, e, t = torch.broadcast_tensors(a.to(dtype), e.to(dtype), t.to(dtype))
    except RuntimeError as err:
        raise ValueError(f"azimuth, elevation, theta: shapes {tuple(a.shape)}, {tuple(e.shape)}, "
                         f"{tuple(t.shape)} do not broadcast ({err})") from None
    deg = math.pi / 180
    angles = torch.stack([t * deg, e * deg - math.pi / 2, -a * deg], dim=-1)
    return euler_to_matrix(angles, "ZXZ")  # intrinsic: Rz(angles[0]) @ Rx(angles[1]) @ Rz(angles[2])


# --------------------------------------------------------------------------- reading annotations
def _loadmat(path: Path):
    from geodl._optional import require

    sio = require("scipy.io", "Pascal3D (reading the .mat annotations)")
    try:
        return sio.loadmat(str(path), squeeze_me=True, struct_as_record=False)
    except FileNotFoundError:
        raise _error(path, "the annotation is missing") from None
    except Exception as e:  # scipy raises ValueError, TypeError, OSError, MatReadError, ... on damaged files
        raise _error(path, f"not a readable .mat file ({type(e).__name__}: {e})") from None


def _is_struct(x) -> bool:
    return hasattr(x, "_fieldnames")


def _field(path: Path, obj, name: str, where: str):
    if not hasattr(obj, name):
        have = ", ".join(getattr(obj, "_fieldnames", []) or [])
        raise _error(path, f"{where} has no field {name!r} (it has {have or 'none'})")
    return getattr(obj, name)


def _scalar(path: Path, value, what: str) -> float:
    a = np.asarray(value)
    if a.dtype.kind not in "iufb" or a.size != 1:
        raise _error(path, f"{what} is {value!r:.60}; expected one number")
    v = float(a.reshape(()))
    if not math.isfinite(v):
        raise _error(path, f"{what} is {v}; expected a finite number")
    return v


def _objects(path: Path) -> list:
    mat = _loadmat(path)
    if "record" not in mat:
        names = [k for k in mat if not k.startswith("__")]
        raise _error(path, f"no variable 'record' (the file holds {', '.join(names) or 'nothing'})")
    record = mat["record"]
    if not _is_struct(record):
        raise _error(path, f"'record' is not a struct ({type(record).__name__})")
    objs = _field(path, record, "objects", "record")
    if _is_struct(objs):
        return [objs]
    if isinstance(objs, np.ndarray) and objs.dtype == object and all(_is_struct(o) for o in objs.ravel()):
        return list(objs.ravel())
    if isinstance(objs, np.ndarray) and objs.size == 0:
        return []
    raise _error(path, f"record.objects is not a struct array ({type(objs).__name__})")


def _annotated(path: Path, vp, where: str) -> bool:
    """Whether the viewpoint is annotated: a struct, and a non-zero distance where it has one."""
    if not _is_struct(vp):
        if isinstance(vp, np.ndarray) and vp.size == 0:
            return False
        raise _error(path, f"{where}.viewpoint is not a struct ({type(vp).__name__})")
    if hasattr(vp, "distance"):
        d = np.asarray(vp.distance)
        if d.size == 0 or (d.size == 1 and d.dtype.kind in "iuf" and float(d.reshape(())) == 0):
            return False
    return True


def _read_annotation(path: Path, image: Path, category: str, source: str, image_id: str) -> list[Pascal3DObject]:
    out = []
    for k, obj in enumerate(_objects(path)):
        where = f"record.objects({k + 1})"
        cls = _field(path, obj, "class", where)
        if not isinstance(cls, str):
            raise _error(path, f"{where}.class is {cls!r:.40}; expected a category name")
        if cls != category:
            continue
        vp = _field(path, obj, "viewpoint", where)
        if not _annotated(path, vp, where):
            continue
        az, el, th = (_scalar(path, _field(path, vp, f, f"{where}.viewpoint"), f"{where}.viewpoint.{f}")
                      for f in ("azimuth", "elevation", "theta"))
        bbox = np.asarray(_field(path, obj, "bbox", where))
        if bbox.dtype.kind not in "iuf" or bbox.size != 4:
            raise _error(path, f"{where}.bbox is {bbox!r:.60}; expected [x1, y1, x2, y2]")
        bbox = bbox.astype(np.float64).ravel()
        if not np.isfinite(bbox).all():
            raise _error(path, f"{where}.bbox has a non-finite entry ({bbox.tolist()})")
        flags = [bool(_scalar(path, _field(path, obj, f, where), f"{where}.{f}"))
                 for f in ("occluded", "truncated", "difficult")]
        out.append(Pascal3DObject(category, source, image_id, path, image, k, az, el, th,
                                  tuple(bbox.tolist()), *flags))
    return out


def _read_list(path: Path) -> list[str]:
    if not path.is_file():
        raise _error(path, "the split list is missing")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise _error(path, f"not a readable text list ({e})") from None
    return [ln.split()[0] for ln in text.splitlines() if ln.strip()]


def _listing(folder: Path) -> dict[str, str]:
    """``{stem: name}`` of the image files of a folder (empty if the folder is absent)."""
    if not folder.is_dir():
        return {}
    out = {}
    for e in os.scandir(folder):
        stem, ext = os.path.splitext(e.name)
        if ext in _IMAGE_EXTS:
            out.setdefault(stem, e.name)
    return out


def _categories_arg(categories) -> list[str]:
    if categories is None:
        return list(PASCAL3D_CATEGORIES)
    return check_name_selection("categories", categories, PASCAL3D_CATEGORIES, item="category",
                                what="the PASCAL3D+ categories", none_hint="all 12")


def _bool(name: str, value) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name}: expected True or False, got {type(value).__name__} ({value!r:.40})")
    return value


def read_pascal3d_image(path) -> "object":
    """The image as a PIL RGB image (decoded), or a ValueError naming the file."""
    from geodl._optional import require

    Image = require("PIL.Image", "Pascal3D")
    try:
        with Image.open(path) as im:
            im.load()
            return im.convert("RGB")
    except FileNotFoundError:
        raise _error(path, "the image is missing") from None
    except Exception as e:  # PIL: UnidentifiedImageError, truncated data, broken streams
        raise _error(path, f"the image does not decode ({type(e).__name__}: {e})") from None


class Pascal3D(Dataset):
    """PASCAL3D+ objects with their viewpoint rotations, from a local folder.

    Parameters
    ----------
    root : str or os.PathLike
        The ``PASCAL3D+_release1.1`` folder, or its parent.
    split : {"train", "test"}
        Image2Sphere's splits (see the module notes): ``train`` = VOC2012 train + ImageNet train
        and val, ``test`` = VOC2012 val.
    categories : None, str or list of str
        From :data:`PASCAL3D_CATEGORIES`; default all 12 (each must have its lists).
    skip_occluded, skip_truncated, skip_difficult : bool
        Drop the objects annotated so (default True: the usual "easy" objects).
    first_object_only : bool
        Consider only the first object of each annotation file (Image2Sphere's choice).
    crop : bool
        Items show the object's box (widened by ``context`` about its centre, clipped to the image)
        resized to ``image_size`` x ``image_size`` (bilinear), as IPDF crops; ``False``: the whole
        image at its own size.
    image_size : int
        The side of the crops (224 in IPDF and Image2Sphere).
    context : float
        The widening of the box (IPDF: 1.166666); at least 1.

    Attributes
    ----------
    objects : list of Pascal3DObject
        One record per item: category, source (``"pascal"``/``"imagenet"``), image id, the ``.mat``
        and image paths, the object's position in ``record.objects``, the angles in degrees, the
        box and the flags.
    rotations : torch.Tensor
        ``(N, 3, 3)`` float32, :func:`pascal3d_rotation` of each object.
    labels : torch.Tensor
        ``(N,)`` int64, the index of each object's category in :data:`PASCAL3D_CATEGORIES`.
    categories : list of str
    root : pathlib.Path

    Items are ``(image, rotation, label)``: ``(3, H, W)`` float32 in [0, 1] (read when accessed),
    ``(3, 3)`` float32 and an int64 scalar tensor. Nothing is written or cached.

    Raises
    ------
    ValueError
        ``root`` missing or not a folder; a split list missing; an image of a list whose annotation
        is missing (or an ImageNet id whose image is missing); a ``.mat`` that does not load, lacks
        ``record``/``objects`` or a field, or holds non-finite angles; an image that does not decode
        (when read). The message names the file or the argument.
    TypeError
        An argument of the wrong type.
    ImportError
        scipy (or Pillow) is not installed: ``pip install 'geodl[bench]'``.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> import numpy as np, scipy.io
    >>> from PIL import Image
    >>> d = pathlib.Path(tempfile.mkdtemp()) / "PASCAL3D+_release1.1"
    >>> for sub in ("Annotations/car_pascal", "Images/car_pascal", "Image_sets",
    ...             "PASCAL/VOCdevkit/VOC2012/ImageSets/Main"):
    ...     (d / sub).mkdir(parents=True)
    >>> _ = (d / "PASCAL/VOCdevkit/VOC2012/ImageSets/Main/car_val.txt").write_text("2008_000001  1\\n")
    >>> Image.new("RGB", (40, 30), (0, 0, 255)).save(d / "Images/car_pascal/2008_000001.jpg")
    >>> obj = np.zeros((1, 1), dtype=[(f, "O") for f in ("class", "viewpoint", "bbox", "occluded",
    ...                                                  "truncated", "difficult")])
    >>> obj[0, 0] = ("car", {"azimuth": 0.0, "elevation": 90.0, "theta": 0.0, "distance": 5.0},
    ...              np.array([5.0, 5.0, 30.0, 25.0]), 0, 0, 0)
    >>> scipy.io.savemat(d / "Annotations/car_pascal/2008_000001.mat", {"record": {"objects": obj}})
    >>> ds = Pascal3D(d, "test", categories="car", image_size=16)
    >>> image, rotation, label = ds[0]
    >>> len(ds), image.shape, rotation.tolist(), PASCAL3D_CATEGORIES[int(label)]
    (1, torch.Size([3, 16, 16]), [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], 'car')
    """

    def __init__(self, root, split: str = "train", *, categories=None, skip_occluded: bool = True,
                 skip_truncated: bool = True, skip_difficult: bool = True, first_object_only: bool = False,
                 crop: bool = True, image_size: int = 224, context: float = CONTEXT):
        root = check_path("root", root).expanduser()
        if not isinstance(split, str):
            raise TypeError(f"split: expected 'train' or 'test', got {type(split).__name__}")
        if split not in SPLITS:
            raise ValueError(f"split: expected 'train' or 'test', got {split!r}")
        cats = _categories_arg(categories)
        flags = {n: _bool(n, v) for n, v in (("skip_occluded", skip_occluded), ("skip_truncated", skip_truncated),
                                             ("skip_difficult", skip_difficult))}
        self.first_object_only = _bool("first_object_only", first_object_only)
        self.crop = _bool("crop", crop)
        self.image_size = check_positive_int("image_size", image_size)
        self.context = check_number("context", context, lo=1.0, hi=100.0)
        if not root.exists():
            raise ValueError(f"root: {root} does not exist (PASCAL3D+ is never downloaded: unpack "
                             f"{RELEASE}.zip and pass its folder)")
        if not root.is_dir():
            raise ValueError(f"root: {root} is not a folder")
        if not (root / "Annotations").is_dir() and (root / RELEASE / "Annotations").is_dir():
            root = root / RELEASE
        if not (root / "Annotations").is_dir():
            raise ValueError(f"root: no Annotations/ folder in {root} (expected the {RELEASE} folder)")
        self.root, self.split, self.categories = root, split, cats
        self._listings = {}  # (category, source) -> {image id: file name}
        objects = []
        for cat in cats:
            for source, image_id in self._ids(cat):
                objects += self._file_objects(cat, source, image_id, flags)
        self.objects = objects
        if objects:
            R = pascal3d_rotation(torch.tensor([o.azimuth for o in objects], dtype=torch.float64),
                                  torch.tensor([o.elevation for o in objects], dtype=torch.float64),
                                  torch.tensor([o.theta for o in objects], dtype=torch.float64))
        else:
            R = torch.zeros(0, 3, 3, dtype=torch.float64)
        self.rotations = R.float()
        self.labels = torch.tensor([PASCAL3D_CATEGORIES.index(o.category) for o in objects], dtype=torch.int64)

    def _ids(self, cat: str):
        """``(source, image id)`` of the split for one category, in list order."""
        root, voc = self.root, self.root / _VOC_SETS
        pascal = _listing(root / "Images" / f"{cat}_pascal")
        voc_list = voc / f"{cat}_{'train' if self.split == 'train' else 'val'}.txt"
        out = [("pascal", i) for i in _read_list(voc_list) if i in pascal]
        if self.split == "train":
            for part in ("train", "val"):
                lst = root / "Image_sets" / f"{cat}_imagenet_{part}.txt"
                out += [("imagenet", i) for i in _read_list(lst)]
        seen, unique = set(), []
        for key in out:
            if key not in seen:
                seen.add(key)
                unique.append(key)
        self._listings[cat, "pascal"] = pascal
        return unique

    def _file_objects(self, cat: str, source: str, image_id: str, flags: dict) -> list[Pascal3DObject]:
        folder = f"{cat}_{source}"
        mat = self.root / "Annotations" / folder / f"{image_id}.mat"
        key = (cat, source)
        if key not in self._listings:
            self._listings[key] = _listing(self.root / "Images" / folder)
        name = self._listings[key].get(image_id)
        if name is None:
            raise _error(self.root / "Images" / folder / f"{image_id}.JPEG",
                         f"the image of the listed id {image_id!r} is missing (looked for {image_id}"
                         f"{{{', '.join(_IMAGE_EXTS)}}})")
        if not mat.is_file():
            raise _error(mat, f"the annotation of {self.root / 'Images' / folder / name} is missing")
        objs = _read_annotation(mat, self.root / "Images" / folder / name, cat, source, image_id)
        if self.first_object_only:
            objs = [o for o in objs if o.object_index == 0]
        keep = []
        for o in objs:
            x1, y1, x2, y2 = o.bbox
            if not (x1 < x2 and y1 < y2):
                continue
            if (flags["skip_occluded"] and o.occluded) or (flags["skip_truncated"] and o.truncated) or \
                    (flags["skip_difficult"] and o.difficult):
                continue
            keep.append(o)
        return keep

    def __len__(self) -> int:
        return len(self.objects)

    def __getitem__(self, index):
        i = check_item_index(index, len(self.objects), "objects")
        o = self.objects[i]
        im = read_pascal3d_image(o.image)
        if self.crop:
            box = self._box(o.bbox, im.size)
            if box is None:
                raise _error(o.annotation, f"record.objects({o.object_index + 1}).bbox {list(o.bbox)} lies outside "
                             f"the {im.size[0]} x {im.size[1]} image {o.image}")
            im = im.resize((self.image_size, self.image_size), resample=_BILINEAR, box=box)
        a = np.asarray(im, dtype=np.uint8)
        image = torch.from_numpy(a.transpose(2, 0, 1).astype(np.float32) / 255)
        return image, self.rotations[i], self.labels[i]

    def _box(self, bbox, size):
        """IPDF's crop box in pixel coordinates: 1-based -> 0-based, widened about the centre, clipped."""
        x1, y1, x2, y2 = (v - 1.0 for v in bbox)
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        x1, x2 = cx - self.context * (cx - x1), cx + self.context * (x2 - cx)
        y1, y2 = cy - self.context * (cy - y1), cy + self.context * (y2 - cy)
        w, h = size
        x1, x2 = min(max(x1, 0.0), w), min(max(x2, 0.0), w)
        y1, y2 = min(max(y1, 0.0), h), min(max(y2, 0.0), h)
        if not (x1 < x2 and y1 < y2):
            return None
        return (x1, y1, x2, y2)

    def __repr__(self) -> str:
        return (f"Pascal3D(split='{self.split}', objects={len(self)}, categories={self.categories}, "
                f"root='{self.root}')")
