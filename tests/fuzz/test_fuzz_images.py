"""Fuzz of the image datasets (entries registered with ``@fuzz`` in this file).

``Digits``: every split, test fraction and seed, checked against scikit-learn's arrays (the images
of the split are those at ``indices``, divided by 16), the per-class test counts
(``round(test_fraction * n_class)``) and the complementary split (disjoint, together all 1797);
bad arguments must be refused naming them. ``CIFAR``: small folders in the official binary format
(CIFAR-10 or CIFAR-100, random records, with or without the class-name files, passed as the
folder or its parent, with or without ``version``), decoded record by record against what was
written; damaged files (a size that is not a whole number of records, an empty file, a label
byte out of range, a class-name file of the wrong length) must raise a ValueError naming the
file, and bad arguments one naming the argument.
"""

from __future__ import annotations

import pytest

from ._harness import REGISTRY, Mut, cases, check_entry, expect, fuzz, st, values, with_cases

S = st()

# --------------------------------------------------------------------------- the class lists
_OFFICIAL_10 = "airplane automobile bird cat deer dog frog horse ship truck".split()
_OFFICIAL_100 = (
    "apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus butterfly camel can "
    "castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile cup dinosaur dolphin "
    "elephant flatfish forest fox girl hamster house kangaroo keyboard lamp lawn_mower leopard lion lizard lobster "
    "man maple_tree motorcycle mountain mouse mushroom oak_tree orange orchid otter palm_tree pear pickup_truck "
    "pine_tree plain plate poppy porcupine possum rabbit raccoon ray road rocket rose sea seal shark shrew skunk "
    "skyscraper snail snake spider squirrel streetcar sunflower sweet_pepper table tank telephone television tiger "
    "tractor train trout tulip turtle wardrobe whale willow_tree wolf woman worm").split()


@fuzz("geodl.data.CIFAR10_CLASSES", "geodl.data.CIFAR100_CLASSES", examples=2)
@with_cases(lambda: cases(S.fixed_dictionaries({"version": S.sampled_from([10, 100])}), {}))
def build_class_lists(version):
    def call():
        import geodl.data

        return getattr(geodl.data, f"CIFAR{version}_CLASSES")

    def verify(classes):
        expect(isinstance(classes, tuple), type(classes).__name__)
        expect(list(classes) == (_OFFICIAL_10 if version == 10 else _OFFICIAL_100), f"{classes}")

    return call, verify


# --------------------------------------------------------------------------- Digits
@S.composite
def _digits(draw):
    return dict(split=draw(S.sampled_from(["train", "test", "all"])),
                test_fraction=draw(S.floats(0.01, 0.95, allow_nan=False)), seed=draw(S.integers(0, 2**40)))


@fuzz("geodl.data.Digits", examples=30)
@with_cases(lambda: cases(_digits(), {
    # 1e-9 (0.9999) empties the test (train) split: refused there, accepted for the other splits
    "test_fraction": values(1e-9, 0.9999, mode="maybe")
    + values(0.0, 1.0, -0.2, 1.5, float("nan"), float("inf"), "0.2", None, True, [0.2]),
    "split": values("val", "TRAIN", "", None, 1),
    "seed": values(-1, 2.5, "0", None, True, -(10**12)),
}))
def build_digits(split, test_fraction, seed):
    import numpy as np
    import torch

    from geodl.data import Digits

    def call():
        return Digits(split, test_fraction=test_fraction, seed=seed)

    def verify(ds):
        from sklearn.datasets import load_digits

        x, y = load_digits(return_X_y=True)
        idx = ds.indices.numpy()
        expect(ds.images.shape == (len(idx), 1, 8, 8) and ds.images.dtype == torch.float32, f"{ds.images.shape}")
        expect(ds.labels.dtype == torch.int64 and len(ds) == len(idx) > 0, "labels")
        expect(np.all(np.diff(idx) > 0) and idx[0] >= 0 and idx[-1] < 1797, "indices not increasing in range")
        expect(np.array_equal(ds.images.numpy().reshape(-1, 64), (x[idx] / 16).astype(np.float32)), "pixels")
        expect(np.array_equal(ds.labels.numpy(), y[idx]), "labels differ from sklearn's")
        if split == "all":
            expect(len(ds) == 1797, f"{len(ds)} images in 'all'")
            return
        other = "test" if split == "train" else "train"
        try:
            comp = Digits(other, test_fraction=test_fraction, seed=seed)
            cidx = comp.indices.numpy()
        except ValueError:  # the other split is empty
            cidx = np.zeros(0, dtype=np.int64)
        expect(not set(idx) & set(cidx) and len(idx) + len(cidx) == 1797, "the splits are not a partition")
        test_labels = y[idx] if split == "test" else y[cidx]
        for c in range(10):
            want = round(test_fraction * int((y == c).sum()))
            expect(int((test_labels == c).sum()) == want, f"class {c}: {(test_labels == c).sum()} test images, "
                                                            f"expected {want}")
        again = Digits(split, test_fraction=test_fraction, seed=seed)
        expect(torch.equal(again.indices, ds.indices), "same seed, other split")
        image, label = ds[len(ds) - 1]
        expect(torch.equal(image, ds.images[-1]) and label.dim() == 0 and int(label) == int(ds.labels[-1]), "item")

    return call, verify


# --------------------------------------------------------------------------- CIFAR
_TRAIN10 = tuple(f"data_batch_{k}.bin" for k in range(1, 6))
_META = {10: ("batches.meta.txt",), 100: ("fine_label_names.txt", "coarse_label_names.txt")}
DAMAGE = {
    "size not a multiple": ("data_batch_1.bin", "test_batch.bin", "train.bin", "test.bin"),
    "empty file": ("data_batch_1.bin", "test_batch.bin", "train.bin", "test.bin"),
    "label out of range": ("data_batch_1.bin", "test_batch.bin", "train.bin", "test.bin"),
    "wrong class count": ("batches.meta.txt", "fine_label_names.txt", "coarse_label_names.txt"),
}


@S.composite
def _cifar(draw):
    version = draw(S.sampled_from([10, 100]))
    return dict(version=version, pass_version=draw(S.booleans()), parent=draw(S.booleans()),
                split=draw(S.sampled_from(["train", "test"])),
                label=draw(S.sampled_from(["fine", "coarse"])) if version == 100 else "fine",
                counts=draw(S.lists(S.integers(1, 3), min_size=6, max_size=6)), names=draw(S.booleans()),
                fixture_seed=draw(S.integers(0, 2**31 - 1)), damage=None, root_kind="path")


def _only_cifar10(kw):
    if kw["version"] != 10:
        raise ValueError("'coarse' is valid on CIFAR-100")
    return "coarse"


@fuzz("geodl.data.CIFAR", examples=40)
@with_cases(lambda: cases(_cifar(), {
    "damage": [m for d, names in DAMAGE.items() for m in values(d, names=names)],
    "split": values("val", "TRAIN", None, 1),
    "version": values(20, 0, "10", 10.0, True),
    "label": values("medium", "FINE", None, 1) + [Mut("'coarse' on CIFAR-10", lambda kw: _only_cifar10(kw))],
    "root_kind": values("int", "bytes", "None", names=("root",)),
}))
def build_cifar(version, pass_version, parent, split, label, counts, names, fixture_seed, damage, root_kind):
    import pathlib
    import tempfile

    import numpy as np
    import torch

    from geodl.data import CIFAR, CIFAR10_CLASSES, CIFAR100_CLASSES

    valid_version = type(version) is int and version in (10, 100)
    v = version if valid_version else 10  # the folder written for a bad version
    top = pathlib.Path(tempfile.mkdtemp(prefix="geodl-fuzz-cifar-"))
    folder = top / ("cifar-10-batches-bin" if v == 10 else "cifar-100-binary")
    folder.mkdir()
    rng = np.random.default_rng(fixture_seed)
    split_files = {10: {"train": _TRAIN10, "test": ("test_batch.bin",)},
                   100: {"train": ("train.bin",), "test": ("test.bin",)}}[v]
    written = {}  # file name -> (label bytes (m, 1 or 2), images (m, 3, 32, 32))
    for name, m in zip([*split_files["train"], *split_files["test"]], counts):
        lab = (rng.integers(0, 10, (m, 1)) if v == 10 else
               np.stack([rng.integers(0, 20, m), rng.integers(0, 100, m)], 1)).astype(np.uint8)
        img = rng.integers(0, 256, (m, 3, 32, 32), dtype=np.uint8)
        # a record: the label byte(s), then the R, G and B planes, each 32x32 row-major
        np.concatenate([lab, img.reshape(m, -1)], 1).tofile(folder / name)
        written[name] = (lab, img)
    class_names = {}
    if names:
        lists = {10: [("batches.meta.txt", [f"c10_{k}" for k in range(10)])],
                 100: [("fine_label_names.txt", [f"f_{k}" for k in range(100)]),
                       ("coarse_label_names.txt", [f"s_{k}" for k in range(20)])]}[v]
        for fname, lst in lists:
            (folder / fname).write_text("\n".join(lst) + "\n" * int(rng.integers(1, 4)))
            class_names[fname] = tuple(lst)
    first = folder / split_files[split if split in ("train", "test") else "train"][0]
    if damage == "size not a multiple":
        first.write_bytes(first.read_bytes()[: -int(rng.integers(1, 3000))])
    elif damage == "empty file":
        first.write_bytes(b"")
    elif damage == "label out of range":
        raw = bytearray(first.read_bytes())
        rec = 3073 if v == 10 else 3074
        col = 0 if v == 10 else int(rng.integers(0, 2))
        i = int(rng.integers(0, len(raw) // rec))
        low = 10 if v == 10 else (20, 100)[col]  # the first value out of range of that byte
        raw[i * rec + col] = int(rng.integers(low, 256))
        first.write_bytes(bytes(raw))
    elif damage == "wrong class count":
        meta = _META[v][1] if v == 100 and label == "coarse" else _META[v][0]
        want = {"batches.meta.txt": 10, "fine_label_names.txt": 100, "coarse_label_names.txt": 20}[meta]
        n = int(rng.choice([k for k in (0, 1, want - 1, want + 1, 2 * want) if k != want]))
        (folder / meta).write_text("\n".join(f"n{k}" for k in range(n)) + "\n")
    root = top if parent else folder
    arg = {"path": root, "int": 3, "bytes": bytes(root), "None": None}[root_kind]
    kwargs = dict(version=version if pass_version or not valid_version else None, label=label)

    def call():
        return CIFAR(arg, split, **kwargs)

    def verify(ds):
        names_ = split_files[split]
        lab = np.concatenate([written[n][0] for n in names_])
        img = np.concatenate([written[n][1] for n in names_])
        col = 0 if v == 10 or label == "coarse" else 1
        expect(ds.version == v and ds.split == split and ds.root == folder, f"{ds.version} {ds.root}")
        expect([f.name for f in ds.files] == list(names_), f"files {ds.files}")
        expect(ds.images.dtype == torch.uint8 and ds.images.shape == img.shape, f"images {tuple(ds.images.shape)}")
        expect(np.array_equal(ds.images.numpy(), img), "decoded pixels differ from the written records")
        expect(ds.labels.dtype == torch.int64 and ds.labels.tolist() == lab[:, col].tolist(), "labels differ")
        meta = {10: "batches.meta.txt", 100: "fine_label_names.txt"}[v] if label == "fine" else "coarse_label_names.txt"
        default = {"batches.meta.txt": CIFAR10_CLASSES, "fine_label_names.txt": CIFAR100_CLASSES}.get(meta)
        want = class_names.get(meta, default)
        if want is not None:
            expect(ds.classes == want, f"classes {ds.classes[:3]}...")
        expect(ds.num_classes == len(ds.classes) == (v if label == "fine" else 20), f"num_classes {ds.num_classes}")
        x, y = ds.tensors()
        expect(x.dtype == torch.float32 and torch.equal(x, ds.images.float() / 255) and torch.equal(y, ds.labels),
               "tensors()")
        i = len(ds) - 1
        image, label_i = ds[i]
        expect(torch.equal(image, x[i]) and label_i.dim() == 0 and int(label_i) == int(lab[i, col]), "item")

    return call, verify


NAMES = sorted(n for n, e in REGISTRY.items() if e.builder.split(":")[0].endswith("test_fuzz_images"))


@pytest.mark.parametrize("name", NAMES)
def test_fuzz(name):
    check_entry(name)
