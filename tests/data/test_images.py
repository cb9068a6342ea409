"""The image datasets: scikit-learn's digits (shapes, ranges, the stratified deterministic split) and
CIFAR-10/100 from small folders written in the official binary format (decoded pixels, plane order,
labels, class-name files, folder detection, and each damaged-file error)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from geodl.data import CIFAR, CIFAR10_CLASSES, CIFAR100_CLASSES, Digits

TRAIN10 = [f"data_batch_{k}.bin" for k in range(1, 6)]


# --------------------------------------------------------------------------- fixture writers
def _pattern(seed: int) -> np.ndarray:
    """A distinctive (3, 32, 32) uint8 image: each plane, row and column gives another value."""
    c, r, k = np.meshgrid(np.arange(3), np.arange(32), np.arange(32), indexing="ij")
    return ((c * 97 + r * 7 + k * 3 + seed * 11) % 256).astype(np.uint8)


def _record(labels, image) -> bytes:
    """One record: the label bytes, then the R plane, the G plane, the B plane (row-major)."""
    out = bytes(labels)
    for plane in range(3):
        for row in range(32):
            out += bytes(int(v) for v in image[plane, row])  # written pixel by pixel, not via numpy's layout
    return out


def write_cifar10(root, counts=(3, 2, 1, 1, 2), test=2, meta=CIFAR10_CLASSES, seed=0):
    """``root/cifar-10-batches-bin`` with the five train batches of ``counts`` records and a test
    batch; returns (folder, {file name: [(label, image), ...]})."""
    folder = root / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    written = {}
    rng = np.random.default_rng(seed)
    for name, m in [*zip(TRAIN10, counts), ("test_batch.bin", test)]:
        recs = []
        for _ in range(m):
            lab, s = int(rng.integers(0, 10)), int(rng.integers(0, 1000))
            recs.append((lab, _pattern(s)))
        (folder / name).write_bytes(b"".join(_record([lab], img) for lab, img in recs))
        written[name] = recs
    if meta is not None:
        (folder / "batches.meta.txt").write_text("\n".join(meta) + "\n\n")
    return folder, written


def write_cifar100(root, train=3, test=2, fine=CIFAR100_CLASSES, coarse=True, seed=0):
    """``root/cifar-100-binary``; returns (folder, {file name: [(coarse, fine, image), ...]})."""
    folder = root / "cifar-100-binary"
    folder.mkdir(parents=True)
    written = {}
    rng = np.random.default_rng(seed)
    for name, m in (("train.bin", train), ("test.bin", test)):
        recs = [(int(rng.integers(0, 20)), int(rng.integers(0, 100)), _pattern(int(rng.integers(0, 1000))))
                for _ in range(m)]
        (folder / name).write_bytes(b"".join(_record([c, f], img) for c, f, img in recs))
        written[name] = recs
    if fine is not None:
        (folder / "fine_label_names.txt").write_text("\n".join(fine) + "\n")
    if coarse:
        (folder / "coarse_label_names.txt").write_text("\n".join(f"super_{k}" for k in range(20)) + "\n")
    return folder, written


# --------------------------------------------------------------------------- Digits
@pytest.fixture
def sklearn():
    return pytest.importorskip("sklearn")  # the `bench` extra: Digits reads scikit-learn's bundled digits


def test_digits_shapes_ranges_dtypes(sklearn):
    ds = Digits("all")
    assert len(ds) == 1797 and ds.images.shape == (1797, 1, 8, 8) and ds.labels.shape == (1797,)
    assert ds.images.dtype == torch.float32 and ds.labels.dtype == torch.int64
    assert float(ds.images.min()) == 0.0 and float(ds.images.max()) == 1.0
    assert torch.equal(ds.images * 16, (ds.images * 16).round())  # the raw values 0..16 divided by 16
    assert ds.classes == tuple("0123456789") and ds.num_classes == 10 and ds.split == "all"
    assert sorted(ds.labels.unique().tolist()) == list(range(10))
    image, label = ds[-1]
    assert image.shape == (1, 8, 8) and image.dtype == torch.float32
    assert label.dtype == torch.int64 and label.dim() == 0 and int(label) == int(ds.labels[-1])
    images, labels = ds.tensors()
    assert images is ds.images and labels is ds.labels
    with pytest.raises(IndexError, match="index"):
        ds[1797]
    with pytest.raises(TypeError, match="index"):
        ds[1.0]


def test_digits_match_sklearn(sklearn):
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    ds = Digits("test", seed=3)
    idx = ds.indices.numpy()
    np.testing.assert_array_equal(ds.images.numpy().reshape(-1, 64), (x[idx] / 16).astype(np.float32))
    np.testing.assert_array_equal(ds.labels.numpy(), y[idx])


@pytest.mark.parametrize("fraction", [0.2, 0.5, 0.37])
def test_digits_split_is_a_stratified_partition(sklearn, fraction):
    from sklearn.datasets import load_digits

    y = load_digits().target
    train, test, full = Digits("train", test_fraction=fraction), Digits("test", test_fraction=fraction), Digits("all")
    a, b = set(train.indices.tolist()), set(test.indices.tolist())
    assert not a & b and a | b == set(range(1797)) and len(train) + len(test) == 1797
    assert torch.equal(torch.cat([train.images, test.images]).sum(0), full.images.sum(0))
    for c in range(10):
        n_class = int((y == c).sum())
        assert int((test.labels == c).sum()) == round(fraction * n_class)
        assert int((train.labels == c).sum()) == n_class - round(fraction * n_class)


def test_digits_split_is_deterministic_by_seed(sklearn):
    a, b, c = Digits("test", seed=5), Digits("test", seed=5), Digits("test", seed=6)
    assert torch.equal(a.indices, b.indices) and torch.equal(a.images, b.images)
    assert not torch.equal(a.indices, c.indices)
    assert torch.equal(torch.sort(a.labels).values, torch.sort(c.labels).values)  # same counts per class


@pytest.mark.parametrize("kwargs, err, arg", [
    (dict(split="val"), ValueError, "split"),
    (dict(split=None), ValueError, "split"),
    (dict(test_fraction=0.0), ValueError, "test_fraction"),
    (dict(test_fraction=1.0), ValueError, "test_fraction"),
    (dict(test_fraction=-0.1), ValueError, "test_fraction"),
    (dict(test_fraction=float("nan")), ValueError, "test_fraction"),
    (dict(test_fraction="0.2"), TypeError, "test_fraction"),
    (dict(test_fraction=True), TypeError, "test_fraction"),
    (dict(split="test", test_fraction=1e-6), ValueError, "test_fraction"),  # no image of any class
    (dict(split="train", test_fraction=0.999), ValueError, "test_fraction"),
    (dict(seed=-1), ValueError, "seed"),
    (dict(seed=1.5), TypeError, "seed"),
    (dict(seed="0"), TypeError, "seed"),
])
def test_digits_bad_arguments(sklearn, kwargs, err, arg):
    with pytest.raises(err, match=f"^{arg}"):
        Digits(**kwargs)


def test_digits_without_sklearn(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ImportError, match=r"geodl\[bench\]"):
        Digits()


# --------------------------------------------------------------------------- CIFAR
def test_cifar_constants():
    assert len(CIFAR10_CLASSES) == 10 and CIFAR10_CLASSES[0] == "airplane" and CIFAR10_CLASSES[-1] == "truck"
    assert len(CIFAR100_CLASSES) == 100 == len(set(CIFAR100_CLASSES))
    assert list(CIFAR100_CLASSES) == sorted(CIFAR100_CLASSES)


@pytest.mark.parametrize("split", ["train", "test"])
def test_cifar10_decodes_what_was_written(tmp_path, split):
    folder, written = write_cifar10(tmp_path)
    names = TRAIN10 if split == "train" else ["test_batch.bin"]
    recs = [r for n in names for r in written[n]]
    for root in (folder, tmp_path):  # the folder itself, or its parent
        ds = CIFAR(root, split)
        assert ds.version == 10 and ds.split == split and ds.root == folder and ds.num_classes == 10
        assert [f.name for f in ds.files] == names
        assert ds.images.shape == (len(recs), 3, 32, 32) and ds.images.dtype == torch.uint8
        assert ds.labels.dtype == torch.int64 and ds.labels.tolist() == [lab for lab, _ in recs]
        for i, (_, img) in enumerate(recs):
            np.testing.assert_array_equal(ds.images[i].numpy(), img)
        image, label = ds[len(ds) - 1]
        assert image.dtype == torch.float32 and image.shape == (3, 32, 32) and label.dim() == 0
        np.testing.assert_allclose(image.numpy(), recs[-1][1] / 255.0, rtol=1e-6)
        assert int(label) == recs[-1][0]
    # the plane order R, G, B and row-major: the first byte after the label is R[0, 0], byte 33 is R[1, 0]
    raw = (folder / names[0]).read_bytes()
    assert ds.images[0, 0, 0, 0] == raw[1] and ds.images[0, 0, 1, 0] == raw[1 + 32]
    assert ds.images[0, 1, 0, 0] == raw[1 + 1024] and ds.images[0, 2, 31, 31] == raw[3072]


def test_cifar10_tensors(tmp_path):
    folder, _ = write_cifar10(tmp_path)
    ds = CIFAR(folder, "test")
    x, y = ds.tensors()
    assert x.dtype == torch.float32 and x.shape == (2, 3, 32, 32) and y is ds.labels
    assert torch.equal(x, ds.images.float() / 255) and float(x.min()) >= 0 and float(x.max()) <= 1
    assert ds.tensors(torch.float64)[0].dtype == torch.float64
    for bad in (torch.int64, "float32", None):
        with pytest.raises(TypeError, match="^dtype"):
            ds.tensors(bad)
    with pytest.raises(IndexError, match="index"):
        ds[2]


def test_cifar_class_names_from_the_meta_file(tmp_path):
    names = tuple(f"thing{k}" for k in range(10))
    folder, _ = write_cifar10(tmp_path / "a", meta=names)
    assert CIFAR(folder).classes == names
    folder, _ = write_cifar10(tmp_path / "b", meta=None)  # absent: the official list
    assert CIFAR(folder).classes == CIFAR10_CLASSES
    folder, _ = write_cifar100(tmp_path / "c", fine=None, coarse=False)
    assert CIFAR(folder).classes == CIFAR100_CLASSES and len(CIFAR(folder, label="coarse").classes) == 20


@pytest.mark.parametrize("split", ["train", "test"])
def test_cifar100_fine_and_coarse(tmp_path, split):
    folder, written = write_cifar100(tmp_path)
    recs = written[f"{split}.bin"]
    fine = CIFAR(tmp_path, split)
    assert fine.version == 100 and fine.num_classes == 100 and fine.classes == CIFAR100_CLASSES
    assert fine.labels.tolist() == [f for _, f, _ in recs]
    coarse = CIFAR(folder, split, version=100, label="coarse")
    assert coarse.num_classes == 20 and coarse.classes == tuple(f"super_{k}" for k in range(20))
    assert coarse.labels.tolist() == [c for c, _, _ in recs] and coarse.label == "coarse"
    for i, (_, _, img) in enumerate(recs):
        np.testing.assert_array_equal(fine.images[i].numpy(), img)
        np.testing.assert_array_equal(coarse.images[i].numpy(), img)


def test_cifar_parent_with_both_releases(tmp_path):
    write_cifar10(tmp_path)
    write_cifar100(tmp_path)
    with pytest.raises(ValueError, match="^version"):
        CIFAR(tmp_path)
    assert CIFAR(tmp_path, version=10).version == 10
    assert CIFAR(tmp_path, version=100, label="coarse").num_classes == 20


def test_cifar_detects_a_renamed_folder(tmp_path):
    folder, _ = write_cifar10(tmp_path / "a")
    renamed = folder.rename(tmp_path / "my_cifar")
    assert CIFAR(renamed).version == 10
    folder, _ = write_cifar100(tmp_path / "b")
    assert CIFAR(folder.rename(tmp_path / "my_cifar100"), "test").version == 100


def test_cifar_missing_folder_and_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist.*cifar-10-batches-bin"):
        CIFAR(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="not a CIFAR folder.*data_batch_1.bin"):
        CIFAR(tmp_path / "empty")
    folder, _ = write_cifar10(tmp_path / "x")
    (folder / "data_batch_3.bin").unlink()
    with pytest.raises(FileNotFoundError, match=r"lacks data_batch_3\.bin.*test_batch\.bin"):
        CIFAR(folder)
    assert len(CIFAR(folder, "test")) == 2  # the test split is whole
    with pytest.raises(FileNotFoundError, match="cifar-100-binary"):  # the parent holds only CIFAR-10
        CIFAR(tmp_path / "x", version=100)
    folder, _ = write_cifar100(tmp_path / "y")
    (folder / "test.bin").unlink()
    with pytest.raises(FileNotFoundError, match=r"test\.bin"):
        CIFAR(folder, "test")
    with pytest.raises(FileNotFoundError, match="not a folder"):
        CIFAR(folder / "train.bin")


def test_cifar_size_not_a_multiple(tmp_path):
    folder, _ = write_cifar10(tmp_path)
    path = folder / "data_batch_2.bin"
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(ValueError, match=rf"{path.name}: size {2 * 3073 - 5} bytes .*3073-byte"):
        CIFAR(folder)
    folder, _ = write_cifar100(tmp_path / "c")
    path = folder / "train.bin"
    path.write_bytes(path.read_bytes() + b"\0")  # one byte more than 3 records
    with pytest.raises(ValueError, match=r"train\.bin: size 9223 bytes .*3074-byte"):
        CIFAR(folder)


def test_cifar_empty_file(tmp_path):
    folder, _ = write_cifar10(tmp_path)
    (folder / "test_batch.bin").write_bytes(b"")
    with pytest.raises(ValueError, match=r"test_batch\.bin: the file is empty"):
        CIFAR(folder, "test")


def test_cifar_bad_label_names_the_record(tmp_path):
    folder, _ = write_cifar10(tmp_path)
    path = folder / "data_batch_1.bin"
    raw = bytearray(path.read_bytes())
    raw[2 * 3073] = 10  # the label byte of record 2
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=r"data_batch_1\.bin: record 2 has the label byte 10"):
        CIFAR(folder)
    folder, _ = write_cifar100(tmp_path / "c")
    for col, value, what in ((0, 20, "coarse"), (1, 100, "fine")):
        path = folder / "test.bin"
        raw = bytearray(path.read_bytes())
        good = raw[3074 + col]
        raw[3074 + col] = value  # record 1
        path.write_bytes(bytes(raw))
        for label in ("fine", "coarse"):
            with pytest.raises(ValueError, match=rf"test\.bin: record 1 has the {what} byte {value}"):
                CIFAR(folder, "test", label=label)
        raw[3074 + col] = good
        path.write_bytes(bytes(raw))
    assert len(CIFAR(folder, "test")) == 2


def test_cifar_wrong_class_count(tmp_path):
    folder, _ = write_cifar10(tmp_path, meta=CIFAR10_CLASSES[:9])
    with pytest.raises(ValueError, match=r"batches\.meta\.txt: expected 10 class names.*found 9"):
        CIFAR(folder)
    (folder / "batches.meta.txt").write_text("a\n\nb\nc\nd\ne\nf\ng\nh\ni\n")
    with pytest.raises(ValueError, match=r"batches\.meta\.txt: .*empty lines"):
        CIFAR(folder)
    folder, _ = write_cifar100(tmp_path / "c", fine=CIFAR100_CLASSES + ("extra",))
    with pytest.raises(ValueError, match=r"fine_label_names\.txt: expected 100 class names.*found 101"):
        CIFAR(folder)
    (folder / "coarse_label_names.txt").write_text("one\ntwo\n")
    with pytest.raises(ValueError, match=r"coarse_label_names\.txt: expected 20"):
        CIFAR(folder, label="coarse")


@pytest.mark.parametrize("kwargs, err, arg", [
    (dict(split="val"), ValueError, "split"),
    (dict(split="TRAIN"), ValueError, "split"),
    (dict(version=20), ValueError, "version"),
    (dict(version="10"), TypeError, "version"),
    (dict(version=True), TypeError, "version"),
    (dict(version=10.0), TypeError, "version"),
    (dict(label="medium"), ValueError, "label"),
    (dict(label=None), ValueError, "label"),
    (dict(label="coarse"), ValueError, "label"),  # CIFAR-10 has no coarse labels
    (dict(version=10, label="coarse"), ValueError, "label"),
])
def test_cifar_bad_arguments(tmp_path, kwargs, err, arg):
    write_cifar10(tmp_path)
    with pytest.raises(err, match=f"^{arg}"):
        CIFAR(tmp_path, **kwargs)


@pytest.mark.parametrize("root", [None, 3, b"/tmp"])
def test_cifar_bad_root_type(root):
    with pytest.raises(TypeError, match="^root"):
        CIFAR(root)


def test_cifar_folder_with_both_kinds_of_batch_files(tmp_path):
    folder, _ = write_cifar10(tmp_path)
    (folder / "train.bin").write_bytes((folder / "data_batch_1.bin").read_bytes()[:3074])
    mixed = folder.rename(tmp_path / "mixed")  # a name that does not tell the version
    with pytest.raises(ValueError, match="^version"):
        CIFAR(mixed)
    assert CIFAR(mixed, version=10).version == 10


def test_cifar_checks_memory_before_reading(tmp_path, monkeypatch):
    import geodl._checks

    folder, _ = write_cifar100(tmp_path)
    with open(folder / "test.bin", "wb") as f:  # a sparse file of 400000 records (1.2 GB, no disk used)
        f.truncate(400_000 * 3074)
    monkeypatch.setattr(geodl._checks, "_available_bytes", lambda device: 1 << 30)

    def no_read(*args, **kwargs):
        raise AssertionError("read before the memory check")

    monkeypatch.setattr(np, "fromfile", no_read)
    with pytest.raises(ValueError, match=r"^root: .*400000 CIFAR-100 images.*GiB"):
        CIFAR(folder, "test")
