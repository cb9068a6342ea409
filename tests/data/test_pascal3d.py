"""The PASCAL3D+ reader: ``Annotations/{cat}_{pascal,imagenet}/{id}.mat`` written here with
``scipy.io.savemat`` in the release's nested layout (a struct ``record`` whose ``objects`` struct
array holds ``class``, ``bbox``, the flags and a ``viewpoint`` struct), JPEG images, the VOC2012 and
ImageNet split lists; the rotation convention on hand-computed cases, the filters, the splits, and a
ValueError naming the file for every malformed list, annotation or image."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch

from geodl.data import PASCAL3D_CATEGORIES, Pascal3D, pascal3d_rotation

sio = pytest.importorskip("scipy.io")
PIL = pytest.importorskip("PIL.Image")

FIELDS = ("class", "viewpoint", "bbox", "occluded", "truncated", "difficult")
VOC = "PASCAL/VOCdevkit/VOC2012/ImageSets/Main"


def obj(cls="car", az=30.0, el=10.0, th=5.0, bbox=(5, 4, 30, 20), occluded=0, truncated=0, difficult=0,
        distance=5.0, viewpoint=None):
    vp = viewpoint if viewpoint is not None else {"azimuth_coarse": az, "elevation_coarse": el, "azimuth": az,
                                                  "elevation": el, "theta": th, "distance": distance,
                                                  "focal": 1.0, "px": 20.0, "py": 15.0, "viewport": 3000}
    return (cls, vp, np.asarray(bbox, dtype=np.float64), occluded, truncated, difficult)


def write_mat(path, objects, record_extra=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.zeros((1, len(objects)), dtype=[(f, "O") for f in FIELDS])
    for k, o in enumerate(objects):
        arr[0, k] = o
    record = {"filename": path.stem + ".jpg", "database": "test", "imgsize": np.array([40, 30, 3]),
              "objects": arr, **(record_extra or {})}
    sio.savemat(path, {"record": record})
    return path


def write_jpeg(path, size=(40, 30), seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    PIL.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path, quality=95)
    return path


def release(root, cats=("car", "chair")):
    """A small release folder: per category two VOC train ids (one image absent: another category's),
    one VOC val id, one ImageNet train id and one ImageNet val id; returns the folder."""
    d = root / "PASCAL3D+_release1.1"
    (d / VOC).mkdir(parents=True)
    (d / "Image_sets").mkdir(parents=True)
    for c, cat in enumerate(cats):
        (d / VOC / f"{cat}_train.txt").write_text(f"2008_{c}00001 -1\n2008_{c}00002  1\n2008_{c}00003  0\n")
        (d / VOC / f"{cat}_val.txt").write_text(f"2009_{c}00001  1\n2009_{c}00009 -1\n")
        (d / "Image_sets" / f"{cat}_imagenet_train.txt").write_text(f"n0{c}_1\n")
        (d / "Image_sets" / f"{cat}_imagenet_val.txt").write_text(f"n0{c}_2\n\n")
        for i, stem in enumerate((f"2008_{c}00002", f"2008_{c}00003", f"2009_{c}00001")):
            write_jpeg(d / "Images" / f"{cat}_pascal" / f"{stem}.jpg", seed=10 * c + i)
            write_mat(d / "Annotations" / f"{cat}_pascal" / f"{stem}.mat",
                      [obj(cat, az=10.0 * (i + 1), el=5.0 * c, th=float(i)), obj("person", viewpoint=np.zeros((0, 0)))])
        for i, stem in enumerate((f"n0{c}_1", f"n0{c}_2")):
            write_jpeg(d / "Images" / f"{cat}_imagenet" / f"{stem}.JPEG", seed=100 + 10 * c + i)
            write_mat(d / "Annotations" / f"{cat}_imagenet" / f"{stem}.mat", [obj(cat, az=200.0 + i, el=-20.0, th=-3.0)])
    return d


def named(path):
    return re.escape(str(path))


def Rz(t):
    return np.array([[math.cos(t), -math.sin(t), 0], [math.sin(t), math.cos(t), 0], [0, 0, 1]])


def Rx(t):
    return np.array([[1, 0, 0], [0, math.cos(t), -math.sin(t)], [0, math.sin(t), math.cos(t)]])


# --------------------------------------------------------------------------- the rotation convention
def test_rotation_hand_computed_cases():
    # a = 90, e = 0, theta = 0: Rx(-90) @ Rz(-90) = [[0, 1, 0], [0, 0, 1], [1, 0, 0]]
    np.testing.assert_allclose(pascal3d_rotation(90.0, 0.0, 0.0).numpy(), [[0, 1, 0], [0, 0, 1], [1, 0, 0]], atol=1e-15)
    # then theta = 90 rotates the image plane: Rz(90) @ that = [[0, 0, -1], [0, 1, 0], [1, 0, 0]]
    np.testing.assert_allclose(pascal3d_rotation(90.0, 0.0, 90.0).numpy(), [[0, 0, -1], [0, 1, 0], [1, 0, 0]], atol=1e-15)
    # seen from straight above (e = 90) with a = theta = 0: the identity
    np.testing.assert_allclose(pascal3d_rotation(0.0, 90.0, 0.0).numpy(), np.eye(3), atol=1e-15)
    # a = e = theta = 0: Rx(-90) = [[1, 0, 0], [0, 0, 1], [0, -1, 0]]
    np.testing.assert_allclose(pascal3d_rotation(0.0, 0.0, 0.0).numpy(), [[1, 0, 0], [0, 0, 1], [0, -1, 0]], atol=1e-15)
    # a = 0, e = 30, theta = 0: Rx(-60) = [[1, 0, 0], [0, 1/2, s], [0, -s, 1/2]] with s = sqrt(3)/2
    s = math.sqrt(3) / 2
    np.testing.assert_allclose(pascal3d_rotation(0.0, 30.0, 0.0).numpy(), [[1, 0, 0], [0, 0.5, s], [0, -s, 0.5]],
                               atol=1e-15)


def test_rotation_matches_the_ipdf_product_on_random_angles():
    rng = np.random.default_rng(0)
    a, e, t = rng.uniform(0, 360, 50), rng.uniform(-90, 90, 50), rng.uniform(-180, 180, 50)
    want = np.stack([Rz(math.radians(ti)) @ Rx(math.radians(ei) - math.pi / 2) @ Rz(-math.radians(ai))
                     for ai, ei, ti in zip(a, e, t)])
    got = pascal3d_rotation(torch.from_numpy(a), torch.from_numpy(e), torch.from_numpy(t))
    assert got.dtype == torch.float64 and got.shape == (50, 3, 3)
    np.testing.assert_allclose(got.numpy(), want, atol=1e-12)
    f32 = pascal3d_rotation(torch.tensor([30.0]), 10.0, torch.tensor(5))
    assert f32.dtype == torch.float32 or f32.dtype == torch.float64
    assert pascal3d_rotation(torch.zeros(2, 1), torch.zeros(3), 0.0).shape == (2, 3, 3, 3)


def test_rotation_bad_angles_are_named():
    with pytest.raises(ValueError, match=r"elevation: non-finite"):
        pascal3d_rotation(0.0, float("nan"), 0.0)
    with pytest.raises(ValueError, match=r"theta: non-finite"):
        pascal3d_rotation(0.0, 0.0, torch.tensor([0.0, float("inf")]))
    with pytest.raises(TypeError, match=r"azimuth"):
        pascal3d_rotation("30", 0.0, 0.0)
    with pytest.raises(TypeError, match=r"theta"):
        pascal3d_rotation(0.0, 0.0, True)
    with pytest.raises(ValueError, match=r"do not broadcast"):
        pascal3d_rotation(torch.zeros(2), torch.zeros(3), 0.0)


# --------------------------------------------------------------------------- splits and items
def test_splits_follow_image2sphere(tmp_path):
    d = release(tmp_path)
    train = Pascal3D(d, "train", categories=["car", "chair"])
    # per category: VOC train ids with an image (2 of 3) + ImageNet train + ImageNet val
    assert [(o.category, o.source, o.image_id) for o in train.objects] == [
        ("car", "pascal", "2008_000002"), ("car", "pascal", "2008_000003"), ("car", "imagenet", "n00_1"),
        ("car", "imagenet", "n00_2"), ("chair", "pascal", "2008_100002"), ("chair", "pascal", "2008_100003"),
        ("chair", "imagenet", "n01_1"), ("chair", "imagenet", "n01_2")]
    test = Pascal3D(tmp_path, "test", categories=["chair", "car"])  # the parent folder; order of the list
    assert [(o.category, o.source, o.image_id) for o in test.objects] == [
        ("car", "pascal", "2009_000001"), ("chair", "pascal", "2009_100001")]
    assert test.categories == ["car", "chair"] and test.root == d
    assert test.labels.tolist() == [PASCAL3D_CATEGORIES.index("car"), PASCAL3D_CATEGORIES.index("chair")]


def test_annotations_round_trip(tmp_path):
    d = release(tmp_path)
    ds = Pascal3D(d, "train", categories="chair")
    o = ds.objects[1]
    assert (o.azimuth, o.elevation, o.theta) == (20.0, 5.0, 1.0)
    assert o.bbox == (5.0, 4.0, 30.0, 20.0) and o.object_index == 0
    assert (o.occluded, o.truncated, o.difficult) == (False, False, False)
    assert o.annotation == d / "Annotations/chair_pascal/2008_100003.mat"
    assert o.image == d / "Images/chair_pascal/2008_100003.jpg"
    assert ds.rotations.dtype == torch.float32 and ds.rotations.shape == (4, 3, 3)
    want = Rz(math.radians(1.0)) @ Rx(math.radians(5.0) - math.pi / 2) @ Rz(-math.radians(20.0))
    np.testing.assert_allclose(ds.rotations[1].numpy(), want, atol=1e-6)
    assert ds.objects[2].image.suffix == ".JPEG"


def test_items_crop_and_full_image(tmp_path):
    d = release(tmp_path)
    ds = Pascal3D(d, "test", categories="car", image_size=16)
    image, R, label = ds[0]
    assert image.shape == (3, 16, 16) and image.dtype == torch.float32
    assert 0 <= float(image.min()) and float(image.max()) <= 1
    assert torch.equal(R, ds.rotations[0]) and label.dtype == torch.int64 and int(label) == 5
    full = Pascal3D(d, "test", categories="car", crop=False)[0][0]
    pixels = np.asarray(PIL.open(d / "Images/car_pascal/2009_000001.jpg").convert("RGB"))
    assert full.shape == (3, 30, 40)
    np.testing.assert_array_equal((full.numpy().transpose(1, 2, 0) * 255).round().astype(np.uint8), pixels)
    # the crop of the whole image (box = the image, context 1) is the resized image
    write_mat(d / "Annotations/car_pascal/2009_000001.mat", [obj("car", bbox=(1, 1, 41, 31))])
    whole = Pascal3D(d, "test", categories="car", image_size=20, context=1.0)[0][0]
    resized = np.asarray(PIL.open(d / "Images/car_pascal/2009_000001.jpg").convert("RGB").resize((20, 20), 2))
    np.testing.assert_allclose(whole.numpy().transpose(1, 2, 0) * 255, resized, atol=1)


def test_grayscale_jpeg_is_read_as_rgb(tmp_path):
    d = release(tmp_path)
    PIL.new("L", (40, 30), 128).save(d / "Images/car_pascal/2009_000001.jpg")
    image = Pascal3D(d, "test", categories="car", crop=False)[0][0]
    assert image.shape == (3, 30, 40) and torch.allclose(image, torch.full_like(image, 128 / 255), atol=2 / 255)


# --------------------------------------------------------------------------- filters
def test_filters(tmp_path):
    d = release(tmp_path)
    write_mat(d / "Annotations/car_pascal/2009_000001.mat", [
        obj("car", az=1.0),                                   # kept
        obj("car", az=2.0, occluded=1),
        obj("car", az=3.0, truncated=1),
        obj("car", az=4.0, difficult=1),
        obj("person", az=5.0),                                # another category: never an item
        obj("car", az=6.0, viewpoint=np.zeros((0, 0))),       # no viewpoint: not annotated
        obj("car", az=7.0, distance=0.0),                     # distance 0: not annotated
        obj("car", az=8.0, bbox=(30, 4, 5, 20)),              # invalid box
        obj("car", az=9.0, occluded=1, truncated=1, difficult=1),
    ])
    az = lambda **kw: [o.azimuth for o in Pascal3D(d, "test", categories="car", **kw).objects]  # noqa: E731
    assert az() == [1.0]
    assert az(skip_occluded=False) == [1.0, 2.0]
    assert az(skip_truncated=False) == [1.0, 3.0]
    assert az(skip_difficult=False) == [1.0, 4.0]
    assert az(skip_occluded=False, skip_truncated=False, skip_difficult=False) == [1.0, 2.0, 3.0, 4.0, 9.0]
    assert [o.object_index for o in Pascal3D(d, "test", categories="car", skip_occluded=False).objects] == [0, 1]
    assert az(first_object_only=True) == [1.0]
    write_mat(d / "Annotations/car_pascal/2009_000001.mat", [obj("car", occluded=1), obj("car", az=2.0)])
    assert az(first_object_only=True) == [] and az() == [2.0]


def test_single_object_struct_and_empty_objects(tmp_path):
    d = release(tmp_path)
    write_mat(d / "Annotations/car_pascal/2009_000001.mat", [obj("car", az=11.0)])  # squeezed to one struct
    assert [o.azimuth for o in Pascal3D(d, "test", categories="car").objects] == [11.0]
    sio.savemat(d / "Annotations/car_pascal/2009_000001.mat", {"record": {"filename": "x", "objects": np.zeros((0, 0))}})
    assert len(Pascal3D(d, "test", categories="car")) == 0


def test_arguments(tmp_path):
    d = release(tmp_path)
    with pytest.raises(ValueError, match=r"categories: unknown 'truck'"):
        Pascal3D(d, categories=["car", "truck"])
    with pytest.raises(ValueError, match=r"categories: an empty selection"):
        Pascal3D(d, categories=[])
    with pytest.raises(TypeError, match=r"categories: expected str entries"):
        Pascal3D(d, categories=[1])
    with pytest.raises(ValueError, match=r"split: expected 'train' or 'test', got 'val'"):
        Pascal3D(d, "val", categories="car")
    with pytest.raises(TypeError, match=r"skip_occluded: expected True or False"):
        Pascal3D(d, categories="car", skip_occluded=1)
    with pytest.raises(ValueError, match=r"context"):
        Pascal3D(d, categories="car", context=0.5)
    with pytest.raises(ValueError, match=r"image_size"):
        Pascal3D(d, categories="car", image_size=0)
    with pytest.raises(ValueError, match=r"root: .*nope does not exist"):
        Pascal3D(tmp_path / "nope")
    with pytest.raises(ValueError, match=r"root: no Annotations/ folder in " + named(tmp_path / "PASCAL3D+_release1.1" / "Images")):
        Pascal3D(d / "Images")


# --------------------------------------------------------------------------- errors naming the file
def test_all_categories_need_their_lists(tmp_path):
    d = release(tmp_path)
    with pytest.raises(ValueError, match=named(d / VOC / "aeroplane_train.txt") + r": the split list is missing"):
        Pascal3D(d)


def test_missing_imagenet_list(tmp_path):
    d = release(tmp_path)
    (d / "Image_sets/car_imagenet_val.txt").unlink()
    assert len(Pascal3D(d, "test", categories="car")) == 1  # test reads only the VOC val list
    with pytest.raises(ValueError, match=named(d / "Image_sets/car_imagenet_val.txt") + r": the split list is missing"):
        Pascal3D(d, "train", categories="car")


def test_missing_annotation_is_named(tmp_path):
    d = release(tmp_path)
    (d / "Annotations/car_pascal/2009_000001.mat").unlink()
    with pytest.raises(ValueError, match=named(d / "Annotations/car_pascal/2009_000001.mat") + r": the annotation of .* is missing"):
        Pascal3D(d, "test", categories="car")


def test_missing_imagenet_image_is_named(tmp_path):
    d = release(tmp_path)
    (d / "Images/car_imagenet/n00_2.JPEG").unlink()
    with pytest.raises(ValueError, match=named(d / "Images/car_imagenet/n00_2.JPEG") + r": the image of the listed id"):
        Pascal3D(d, "train", categories="car")


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty"])
def test_malformed_mat_is_named(tmp_path, damage):
    d = release(tmp_path)
    mat = d / "Annotations/car_pascal/2009_000001.mat"
    data = mat.read_bytes()
    mat.write_bytes({"garbage": b"this is not a MATLAB file" * 10, "truncated": data[: len(data) // 2],
                     "empty": b""}[damage])
    with pytest.raises(ValueError, match=named(mat) + r": not a readable \.mat file"):
        Pascal3D(d, "test", categories="car")


def test_mat_without_record_or_objects_or_fields(tmp_path):
    d = release(tmp_path)
    mat = d / "Annotations/car_pascal/2009_000001.mat"
    sio.savemat(mat, {"rec": {"objects": 1}})
    with pytest.raises(ValueError, match=named(mat) + r": no variable 'record' \(the file holds rec\)"):
        Pascal3D(d, "test", categories="car")
    sio.savemat(mat, {"record": np.zeros(3)})
    with pytest.raises(ValueError, match=named(mat) + r": 'record' is not a struct"):
        Pascal3D(d, "test", categories="car")
    sio.savemat(mat, {"record": {"filename": "x.jpg"}})
    with pytest.raises(ValueError, match=named(mat) + r": record has no field 'objects' \(it has filename\)"):
        Pascal3D(d, "test", categories="car")
    sio.savemat(mat, {"record": {"objects": np.zeros(3)}})
    with pytest.raises(ValueError, match=named(mat) + r": record.objects is not a struct array"):
        Pascal3D(d, "test", categories="car")
    arr = np.zeros((1, 1), dtype=[("class", "O"), ("bbox", "O")])
    arr[0, 0] = ("car", np.array([1.0, 2, 3, 4]))
    sio.savemat(mat, {"record": {"objects": arr}})
    with pytest.raises(ValueError, match=named(mat) + r": record.objects\(1\) has no field 'viewpoint'"):
        Pascal3D(d, "test", categories="car")
    write_mat(mat, [obj("car", viewpoint={"azimuth": 1.0, "elevation": 2.0, "distance": 3.0})])
    with pytest.raises(ValueError, match=named(mat) + r": record.objects\(1\).viewpoint has no field 'theta'"):
        Pascal3D(d, "test", categories="car")
    write_mat(mat, [obj("car", viewpoint=np.array([1.0, 2.0]))])
    with pytest.raises(ValueError, match=named(mat) + r": record.objects\(1\).viewpoint is not a struct"):
        Pascal3D(d, "test", categories="car")
    write_mat(mat, [obj("car", bbox=(1, 2, 3))])
    with pytest.raises(ValueError, match=named(mat) + r": record.objects\(1\).bbox is .* expected \[x1, y1, x2, y2\]"):
        Pascal3D(d, "test", categories="car")


@pytest.mark.parametrize("field", ["azimuth", "elevation", "theta"])
def test_nan_angle_is_named(tmp_path, field):
    d = release(tmp_path)
    mat = d / "Annotations/car_pascal/2009_000001.mat"
    write_mat(mat, [obj("car", **{{"azimuth": "az", "elevation": "el", "theta": "th"}[field]: float("nan")})])
    with pytest.raises(ValueError, match=named(mat) + rf": record.objects\(1\).viewpoint.{field} is nan"):
        Pascal3D(d, "test", categories="car")


def test_nan_bbox_is_named(tmp_path):
    d = release(tmp_path)
    mat = d / "Annotations/car_pascal/2009_000001.mat"
    write_mat(mat, [obj("car", bbox=(1, np.nan, 3, 4))])
    with pytest.raises(ValueError, match=named(mat) + r": record.objects\(1\).bbox has a non-finite entry"):
        Pascal3D(d, "test", categories="car")


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_malformed_jpeg_is_named_when_read(tmp_path, damage):
    d = release(tmp_path)
    jpg = d / "Images/car_pascal/2009_000001.jpg"
    data = jpg.read_bytes()
    jpg.write_bytes(data[: len(data) // 3] if damage == "truncated" else b"not an image" * 20)
    ds = Pascal3D(d, "test", categories="car")
    with pytest.raises(ValueError, match=named(jpg) + r": the image does not decode"):
        ds[0]


def test_box_outside_the_image_is_named(tmp_path):
    d = release(tmp_path)
    mat = d / "Annotations/car_pascal/2009_000001.mat"
    write_mat(mat, [obj("car", bbox=(100, 100, 120, 130))])
    ds = Pascal3D(d, "test", categories="car")
    with pytest.raises(ValueError, match=named(mat) + r": record.objects\(1\).bbox .* lies outside"):
        ds[0]
    assert Pascal3D(d, "test", categories="car", crop=False)[0][0].shape == (3, 30, 40)


def test_nothing_is_written(tmp_path):
    d = release(tmp_path)
    before = sorted(p for p in tmp_path.rglob("*"))
    ds = Pascal3D(d, "train", categories=["car", "chair"])
    for i in range(len(ds)):
        ds[i]
    assert sorted(p for p in tmp_path.rglob("*")) == before
