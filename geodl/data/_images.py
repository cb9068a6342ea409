"""Image data of the Poincaré ResNet benchmark: scikit-learn's 8x8 digits and CIFAR-10/100 from a local folder.

:class:`Digits` wraps the 1797 handwritten digits that ship inside scikit-learn
(``sklearn.datasets.load_digits``; nothing is downloaded, scikit-learn is in the ``bench`` extra):
8x8 grey images with integer values 0..16, returned divided by 16 (``[0, 1]``). The train/test
split is stratified and deterministic: for each class in turn (0, ..., 9) the positions of its
images are permuted by one ``numpy.random.default_rng(seed)`` and the first
``round(test_fraction * n_class)`` of them (Python's ``round``) go to the test split, the others
to the train split; both keep the original order of the images.

:class:`CIFAR` reads CIFAR-10 or CIFAR-100 from the official **binary** release unpacked in a user
folder (never the pickled Python release, never downloaded)::

    cifar-10-batches-bin/                     cifar-100-binary/
        data_batch_1.bin ... data_batch_5.bin     train.bin
        test_batch.bin                            test.bin
        batches.meta.txt                          fine_label_names.txt
                                                  coarse_label_names.txt

A batch file is a sequence of fixed-size records: CIFAR-10 records are 3073 bytes (1 label byte
0..9, then the image), CIFAR-100 records 3074 bytes (1 coarse label byte 0..19, 1 fine label byte
0..99, then the image). The image is 3072 bytes: the 1024 red values, then the 1024 green, then
the 1024 blue, each plane 32x32 in row-major order, i.e. exactly a ``(3, 32, 32)`` uint8 array.
The real files hold 10000 (CIFAR-10) or 50000/10000 (CIFAR-100) records; any whole, non-zero
number of records is accepted. The label files list the class names one per line (trailing empty
lines are ignored); where one is absent the official list is used (:data:`CIFAR10_CLASSES`,
:data:`CIFAR100_CLASSES`, and the 20 superclasses for ``label="coarse"``).

Errors name the argument or the file: a missing folder or file is a ``FileNotFoundError`` naming
the path and listing what was expected; a file whose size is not a whole, non-zero number of
records, a label byte out of range (with the record index) or a label file with the wrong number
of names is a ``ValueError`` naming the file. The total size is checked against the available
memory (:func:`geodl._checks.check_memory`) before anything is read.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from geodl._checks import check_choice, check_int, check_item_index, check_memory, check_number, check_path
from geodl._optional import require

__all__ = ["Digits", "CIFAR", "CIFAR10_CLASSES", "CIFAR100_CLASSES"]

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CIFAR100_CLASSES = (
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle", "bottle", "bowl", "boy",
    "bridge", "bus", "butterfly", "camel", "can", "castle", "caterpillar", "cattle", "chair", "chimpanzee", "clock",
    "cloud", "cockroach", "couch", "crab", "crocodile", "cup", "dinosaur", "dolphin", "elephant", "flatfish",
    "forest", "fox", "girl", "hamster", "house", "kangaroo", "keyboard", "lamp", "lawn_mower", "leopard", "lion",
    "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain", "mouse", "mushroom", "oak_tree", "orange",
    "orchid", "otter", "palm_tree", "pear", "pickup_truck", "pine_tree", "plain", "plate", "poppy", "porcupine",
    "possum", "rabbit", "raccoon", "ray", "road", "rocket", "rose", "sea", "seal", "shark", "shrew", "skunk",
    "skyscraper", "snail", "snake", "spider", "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank",
    "telephone", "television", "tiger", "tractor", "train", "trout", "tulip", "turtle", "wardrobe", "whale",
    "willow_tree", "wolf", "woman", "worm",
)
_CIFAR100_COARSE = (
    "aquatic_mammals", "fish", "flowers", "food_containers", "fruit_and_vegetables", "household_electrical_devices",
    "household_furniture", "insects", "large_carnivores", "large_man-made_outdoor_things",
    "large_natural_outdoor_scenes", "large_omnivores_and_herbivores", "medium_mammals", "non-insect_invertebrates",
    "people", "reptiles", "small_mammals", "trees", "vehicles_1", "vehicles_2",
)

_IMAGE_BYTES = 3 * 32 * 32
_DIGIT_CLASSES = tuple(str(k) for k in range(10))


# --------------------------------------------------------------------------- Digits
class Digits(Dataset):
    """scikit-learn's 8x8 handwritten digits (1797 images, bundled with scikit-learn; no download).

    Parameters
    ----------
    split : {"train", "test", "all"}
    test_fraction : float
        Share of each class put in the test split, in ``(0, 1)``: ``round(test_fraction * n_class)``
        images of every class.
    seed : int
        Seed of the stratified split (``>= 0``); the same seed gives the same split.

    Attributes
    ----------
    images : torch.Tensor
        ``(N, 1, 8, 8)`` float32 in ``[0, 1]`` (the raw values 0..16 divided by 16).
    labels : torch.Tensor
        ``(N,)`` int64 in ``[0, 10)``.
    indices : torch.Tensor
        ``(N,)`` int64: the position of each image among the 1797 of ``load_digits`` (increasing).
    classes : tuple of str
        ``("0", ..., "9")``.
    num_classes : int
        10.
    split : str

    Items are ``(image (1, 8, 8) float32, label 0-d int64)``.

    Raises
    ------
    ValueError
        A bad ``split``, ``test_fraction`` outside ``(0, 1)`` or leaving the split empty, a negative ``seed``.
    TypeError
        An argument of the wrong type.
    ImportError
        scikit-learn is not installed (``pip install 'geodl[bench]'``).

    Examples
    --------
    >>> train, test = Digits("train"), Digits("test")
    >>> len(train), len(test), len(Digits("all"))
    (1438, 359, 1797)
    >>> image, label = train[0]
    >>> tuple(image.shape), image.dtype, label.dtype, float(train.images.max())
    ((1, 8, 8), torch.float32, torch.int64, 1.0)
    """

    def __init__(self, split: str = "train", *, test_fraction: float = 0.2, seed: int = 0):
        check_choice("split", split, ("train", "test", "all"))
        test_fraction = check_number("test_fraction", test_fraction)
        if not 0.0 < test_fraction < 1.0:
            raise ValueError(f"test_fraction: expected a number in (0, 1), got {test_fraction!r}")
        seed = check_int("seed", seed, min=0, max=2**63 - 1)
        datasets = require("sklearn.datasets", "Digits (the 8x8 digits bundled with scikit-learn)")
        x, y = datasets.load_digits(return_X_y=True)
        y = np.asarray(y, dtype=np.int64)
        is_test = np.zeros(len(y), dtype=bool)
        rng = np.random.default_rng(seed)
        for c in range(10):
            where = np.flatnonzero(y == c)
            k = round(test_fraction * len(where))
            is_test[where[rng.permutation(len(where))[:k]]] = True
        keep = {"all": np.ones(len(y), dtype=bool), "test": is_test, "train": ~is_test}[split]
        idx = np.flatnonzero(keep)
        if len(idx) == 0:
            raise ValueError(f"test_fraction: {test_fraction!r} leaves the {split} split empty "
                             f"(round(test_fraction * n_class) images of each class go to the test split)")
        self.split, self.test_fraction, self.seed = split, test_fraction, seed
        self.classes, self.num_classes = _DIGIT_CLASSES, 10
        self.indices = torch.from_numpy(idx.astype(np.int64))
        pixels = np.asarray(x, dtype=np.float64)[idx].reshape(-1, 1, 8, 8) / 16.0
        self.images = torch.from_numpy(pixels.astype(np.float32))
        self.labels = torch.from_numpy(y[idx])

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(images (N, 1, 8, 8) float32, labels (N,) int64)`` of the whole split, for full-batch
        training (the attributes themselves, not copies)."""
        return self.images, self.labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index):
        i = check_item_index(index, len(self.labels), "images")
        return self.images[i].clone(), self.labels[i].clone()

    def __repr__(self) -> str:
        return f"Digits(split={self.split!r}, images={len(self)}, test_fraction={self.test_fraction}, seed={self.seed})"


# --------------------------------------------------------------------------- CIFAR
_FOLDERS = {10: "cifar-10-batches-bin", 100: "cifar-100-binary"}
_SPLIT_FILES = {
    10: {"train": tuple(f"data_batch_{k}.bin" for k in range(1, 6)), "test": ("test_batch.bin",)},
    100: {"train": ("train.bin",), "test": ("test.bin",)},
}
_RECORD = {10: 1 + _IMAGE_BYTES, 100: 2 + _IMAGE_BYTES}


def _layout(version: int) -> str:
    """The expected folder and files of ``version``, for error messages."""
    files = ["data_batch_1.bin ... data_batch_5.bin", "test_batch.bin"] if version == 10 else ["train.bin", "test.bin"]
    meta = "batches.meta.txt" if version == 10 else "fine_label_names.txt, coarse_label_names.txt"
    return f"{_FOLDERS[version]}/ with {', '.join(files)} (and optionally {meta})"


def _version_arg(version):
    if version is None:
        return None
    if isinstance(version, (bool, np.bool_)) or not isinstance(version, (int, np.integer)):
        raise TypeError(f"version: expected None, 10 or 100, got {type(version).__name__} ({version!r})")
    if int(version) not in _FOLDERS:
        raise ValueError(f"version: expected None, 10 or 100, got {version!r}")
    return int(version)


def _resolve(root: Path, version: int | None) -> tuple[Path, int]:
    """The folder holding the batch files, and the version."""
    if not root.exists():
        raise FileNotFoundError(f"root: {root} does not exist (CIFAR is never downloaded: unpack the binary release "
                                f"cifar-10-binary.tar.gz or cifar-100-binary.tar.gz and pass the folder; expected "
                                f"{_layout(10)}, or {_layout(100)})")
    if not root.is_dir():
        raise FileNotFoundError(f"root: {root} is not a folder (expected {_layout(10)}, or {_layout(100)})")
    children = {v: root / name for v, name in _FOLDERS.items() if (root / name).is_dir()}
    if children:  # root is the folder the archive was unpacked into
        if version is None:
            if len(children) > 1:
                raise ValueError(f"version: {root} holds both {_FOLDERS[10]}/ and {_FOLDERS[100]}/; "
                                 f"pass version=10 or version=100 (or one of the folders as root)")
            (version, folder), = children.items()
            return folder, version
        if version in children:
            return children[version], version
        raise FileNotFoundError(f"root: {root / _FOLDERS[version]} does not exist (version={version}; "
                                f"expected {root}/{_layout(version)})")
    if version is not None:
        return root, version
    for v, name in _FOLDERS.items():
        if root.name == name:
            return root, v
    has = {v: any((root / f).is_file() for s in ("train", "test") for f in _SPLIT_FILES[v][s]) for v in _FOLDERS}
    if has[10] and has[100]:
        raise ValueError(f"version: {root} holds the batch files of both CIFAR-10 and CIFAR-100; "
                         f"pass version=10 or version=100")
    for v in _FOLDERS:
        if has[v]:
            return root, v
    raise FileNotFoundError(f"root: {root} is not a CIFAR folder: expected {_layout(10)}, or {_layout(100)}, "
                            f"or a folder holding one of them")


def _read_names(path: Path, default: tuple, count: int) -> tuple:
    if not path.exists():
        return default
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not a text file of class names ({exc})") from None
    names = [line.strip() for line in text.splitlines()]
    while names and not names[-1]:
        names.pop()
    if len(names) != count or not all(names):
        found = f"{len(names)} lines" + (" with empty lines among them" if not all(names) else "")
        raise ValueError(f"{path}: expected {count} class names, one per line, found {found}")
    return tuple(names)


class CIFAR(Dataset):
    """CIFAR-10 or CIFAR-100 (Krizhevsky 2009) from the official binary release in a local folder.

    Parameters
    ----------
    root : str or os.PathLike
        The ``cifar-10-batches-bin/`` or ``cifar-100-binary/`` folder, or the folder holding it.
    split : {"train", "test"}
    version : {None, 10, 100}
        ``None``: detected from the folder (an error where ``root`` holds both releases).
    label : {"fine", "coarse"}
        CIFAR-100's 100 fine classes or its 20 superclasses; CIFAR-10 has only ``"fine"``.

    Attributes
    ----------
    images : torch.Tensor
        ``(N, 3, 32, 32)`` uint8, the planes in the order R, G, B.
    labels : torch.Tensor
        ``(N,)`` int64 in ``[0, num_classes)``.
    classes : tuple of str
        The names of the label file of the folder, else the official list.
    num_classes : int
        10, 100 or 20 (``label="coarse"``).
    version : int
        10 or 100.
    split, label : str
    root : pathlib.Path
        The folder read.
    files : list of pathlib.Path
        The batch files read, in order (CIFAR-10 train: ``data_batch_1.bin`` ... ``data_batch_5.bin``).

    Items are ``(image (3, 32, 32) float32 in [0, 1], label 0-d int64)``; :meth:`tensors` gives the
    whole split at once.

    Raises
    ------
    FileNotFoundError
        ``root`` or a batch file is missing (the path and the expected layout in the message).
    ValueError
        A batch file that is empty or not a whole number of records, a label byte out of range
        (file and record index named), a label file with the wrong number of names; a bad ``split``,
        ``version`` or ``label``, both releases under ``root`` without ``version``.
    TypeError
        An argument of the wrong type.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> import numpy as np
    >>> d = pathlib.Path(tempfile.mkdtemp()) / "cifar-10-batches-bin"
    >>> d.mkdir()
    >>> record = np.concatenate([[3], np.arange(3072) % 256]).astype(np.uint8)  # label 3 (cat)
    >>> for name in [f"data_batch_{k}.bin" for k in range(1, 6)] + ["test_batch.bin"]:
    ...     np.stack([record] * 2).tofile(d / name)
    >>> ds = CIFAR(d.parent, "train")
    >>> ds.version, len(ds), ds.classes[ds.labels[0]], tuple(ds.images.shape)
    (10, 10, 'cat', (10, 3, 32, 32))
    >>> image, label = ds[0]
    >>> image.dtype, int(label), float(image[1, 0, 0]) == 1024 % 256 / 255
    (torch.float32, 3, True)
    """

    def __init__(self, root, split: str = "train", *, version=None, label: str = "fine"):
        root = check_path("root", root).expanduser()
        check_choice("split", split, ("train", "test"))
        version = _version_arg(version)
        check_choice("label", label, ("fine", "coarse"))
        if version == 10 and label == "coarse":
            raise ValueError("label: 'coarse' is only for CIFAR-100 (CIFAR-10 has only the fine labels); "
                             "pass label='fine'")
        folder, version = _resolve(root, version)
        if version == 10 and label == "coarse":
            raise ValueError(f"label: 'coarse' is only for CIFAR-100, and {folder} is CIFAR-10; pass label='fine'")
        files = [folder / name for name in _SPLIT_FILES[version][split]]
        missing = [f.name for f in files if not f.is_file()]
        if missing:
            raise FileNotFoundError(f"root: {folder} lacks {', '.join(missing)} of the {split} split (expected "
                                    f"{_layout(version)})")
        record = _RECORD[version]
        counts = []
        for f in files:
            size = f.stat().st_size
            if size == 0:
                raise ValueError(f"{f}: the file is empty (expected a whole number of {record}-byte records)")
            if size % record:
                raise ValueError(f"{f}: size {size} bytes is not a whole number of {record}-byte CIFAR-{version} "
                                 f"records ({size // record} records and {size % record} bytes left over)")
            counts.append(size // record)
        n = sum(counts)
        check_memory("root", str(folder), n * (_IMAGE_BYTES + 8) + max(counts) * record, "cpu",
                     what=f"{n} CIFAR-{version} images")
        if label == "coarse":
            classes = _read_names(folder / "coarse_label_names.txt", _CIFAR100_COARSE, 20)
        elif version == 100:
            classes = _read_names(folder / "fine_label_names.txt", CIFAR100_CLASSES, 100)
        else:
            classes = _read_names(folder / "batches.meta.txt", CIFAR10_CLASSES, 10)

        images = np.empty((n, _IMAGE_BYTES), dtype=np.uint8)
        labels = np.empty(n, dtype=np.int64)
        start = 0
        label_bytes = ((0, 20, "coarse"), (1, 100, "fine")) if version == 100 else ((0, 10, "label"),)
        for f, m in zip(files, counts):
            data = np.fromfile(f, dtype=np.uint8)
            if data.size != m * record:  # the file changed since its size was read
                raise ValueError(f"{f}: size {data.size} bytes changed while reading (expected {m * record})")
            data = data.reshape(m, record)
            for col, limit, what in label_bytes:
                bad = np.flatnonzero(data[:, col] >= limit)
                if len(bad):
                    i = int(bad[0])
                    raise ValueError(f"{f}: record {i} has the {what} byte {int(data[i, col])}, expected "
                                     f"0..{limit - 1} ({len(bad)} bad record(s); records are {record} bytes)")
            col = 0 if version == 10 or label == "coarse" else 1
            labels[start:start + m] = data[:, col]
            images[start:start + m] = data[:, record - _IMAGE_BYTES:]
            start += m
            del data
        self.root, self.files, self.version, self.split, self.label = folder, files, version, split, label
        self.classes, self.num_classes = classes, len(classes)
        self.images = torch.from_numpy(images.reshape(n, 3, 32, 32))
        self.labels = torch.from_numpy(labels)

    def tensors(self, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
        """``(images (N, 3, 32, 32) of floating ``dtype`` in [0, 1], labels (N,) int64)`` of the whole
        split (new image memory, checked against the available memory first)."""
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise TypeError(f"dtype: expected a floating-point torch.dtype, got {dtype!r}")
        check_memory("dtype", dtype, self.images.numel() * dtype.itemsize, "cpu",
                     what=f"{len(self)} images of {dtype}")
        return self.images.to(dtype).div_(255), self.labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index):
        i = check_item_index(index, len(self.labels), "images")
        return self.images[i].to(torch.float32).div_(255), self.labels[i].clone()

    def __repr__(self) -> str:
        return (f"CIFAR(version={self.version}, split={self.split!r}, label={self.label!r}, images={len(self)}, "
                f"root='{self.root}')")
