"""Fuzz of the DynLab reader (entries registered with ``@fuzz`` in this file).

``read_dynlab_pose``: random rigid poses written in every layout (4x4 rows, one matrix per line, 3x4 rows,
3x4 per line, one number per line; exact or rounded numbers, CRLF, extra blank lines) read back against
the generating matrices; damaged files (empty, a non-number, NaN/inf, a count of numbers that is neither
12k nor 16k, a wrong last row, a scaled or reflected block, non-UTF-8 bytes, a folder) must raise a
ValueError naming the file. ``DynLab``: small folders of ``<scene>-<config>.ply/.pose`` pairs written in
the documented format (ascii, binary little and big endian, faces after the vertices, every colour and
segment property variant, an extra property, hidden and foreign files), with scene / config selections,
read back value by value; damaged folders (a lone file, a misnamed file, a truncated body, a bad header,
NaN coordinates, negative segments, colours out of range, missing properties, a pose count that does not
match, a pose that is not a rotation) must raise a ValueError naming the file, bad arguments one naming
the argument.
"""

from __future__ import annotations

import pytest
from dynlab_fixture import LAYOUTS  # tests/ is on sys.path

from ._harness import REGISTRY, Case, cases, check_entry, close, expect, fuzz, st, values, with_cases

S = st()
SEEDS = S.integers(0, 2**31 - 1)


# --------------------------------------------------------------------------- file writers (run in the worker)
def _poses(k, seed):
    import numpy as np

    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((k, 3, 3)))
    q = q * np.sign(np.linalg.det(q))[:, None, None]  # det +1
    T = np.zeros((k, 4, 4))
    T[:, :3, :3] = q
    T[:, :3, 3] = rng.standard_normal((k, 3)) * 2
    T[:, 3, 3] = 1
    return T


def _pose_text(T, layout, decimals=None, crlf=False, blank=False):
    from dynlab_fixture import pose_text

    return pose_text(T, layout, decimals, crlf, blank)


def _write_ply(path, fields: dict, fmt: str = "ascii", faces=None):
    from dynlab_fixture import write_ply

    write_ply(path, fields, fmt, faces, comment="written by the geodl fuzz")


def _cloud(spec):
    """``(fields, T)`` of one pair from its spec (n points, k segments, property names, seed)."""
    import numpy as np

    rng = np.random.default_rng(spec["seed"])
    n, k = spec["n"], spec["k"]
    f = {c: (rng.standard_normal(n) * 3).astype(np.float32) for c in "xyz"}
    for c in spec["colour"]:
        f[c] = rng.random(n).astype(np.float32) if spec["float_colour"] else rng.integers(0, 256, n).astype(np.uint8)
    seg = rng.integers(0, k, n).astype(np.dtype(spec["seg_type"]))
    seg[:k] = np.arange(k)  # every segment present, max = k - 1
    f[spec["seg"]] = seg
    if spec["extra"]:
        f["confidence"] = rng.random(n)  # a double property the reader must carry along and ignore
    return f, _poses(k, spec["seed"] + 1)


# --------------------------------------------------------------------------- read_dynlab_pose
POSE_NAME = "3-7.pose"
POSE_DAMAGE = ("empty", "garbage token", "nan", "inf", "count 13", "count 20", "bad last row", "scaled",
               "reflection", "not utf-8", "a folder")


@fuzz("geodl.data.read_dynlab_pose", examples=40)
@with_cases(lambda: cases(S.fixed_dictionaries({
    "k": S.integers(1, 4), "layout": S.sampled_from(LAYOUTS), "decimals": S.sampled_from([None, None, 6, 9]),
    "crlf": S.booleans(), "blank": S.booleans(), "seed": SEEDS, "damage": S.none(),
    "path_kind": S.sampled_from(["path", "str"])}), {
    "damage": values(*POSE_DAMAGE, names=(POSE_NAME,)), "path_kind": values("int", "bytes", "None", names=("path",))}))
def build_read_dynlab_pose(k, layout, decimals, crlf, blank, seed, damage, path_kind):
    import pathlib
    import tempfile

    import numpy as np

    from geodl.data import read_dynlab_pose

    T = _poses(k, seed)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="geodl-fuzz-pose-"))
    path = tmp / POSE_NAME
    text = _pose_text(T, layout, decimals, crlf, blank)
    if damage == "empty":
        text = "\n  \n" if blank else ""
    elif damage == "garbage token":
        text = text.replace(" ", " x1 ", 1) if " " in text.strip() else "one\n" + text
        text = " ".join(text.split()[:-1])  # keep the count of tokens: the non-number is what is wrong
    elif damage in ("nan", "inf"):
        toks = text.split()
        toks[seed % len(toks)] = damage
        text = " ".join(toks)
    elif damage in ("count 13", "count 20"):
        text = " ".join(["0.5"] * int(damage.split()[1]))
    elif damage == "bad last row":
        bad = T[:1].copy()
        bad[0, 3] = (0, 0, 1, 1)  # 16 numbers (not 12k) whose last row is not 0 0 0 1
        text = _pose_text(bad, "4x4 rows")
    elif damage in ("scaled", "reflection"):
        bad = T.copy()
        j = seed % k
        bad[j, :3, :3] = bad[j, :3, :3] * (1.01 if damage == "scaled" else -1.0)
        text = _pose_text(bad, layout, decimals, crlf, blank)
    if damage == "not utf-8":
        path.write_bytes(b"1 0 0 \xff\xfe 0\n")
    elif damage == "a folder":
        path.mkdir()
    else:
        path.write_text(text, newline="")
    arg = {"path": path, "str": str(path), "int": 3, "bytes": bytes(path), "None": None}[path_kind]

    def call():
        return read_dynlab_pose(arg)

    def verify(out):
        expect(out.dtype == np.float64 and out.shape == (k, 4, 4), f"{out.dtype} {out.shape}")
        expect(np.array_equal(out[:, 3], np.tile([0.0, 0, 0, 1], (k, 1))), "last rows")
        if decimals is None:
            expect(np.array_equal(out, T), "poses differ (written exactly)")
        else:
            expect(np.abs(out - T).max() <= 0.6 * 10.0**-decimals, f"poses differ by {np.abs(out - T).max():.3g}")

    return call, verify


# --------------------------------------------------------------------------- DynLab
SCENES = ("1", "2", "10", "b")
CONFIGS = ("1", "2", "x")
SEG_NAMES = ("idx", "segment", "seg", "label", "segment_id", "instance", "object")
DAMAGE = ("lone ply", "lone pose", "misnamed", "truncated", "bad header", "nan coordinate", "negative segment",
          "colour out of range", "no colour", "no segment", "no z", "pose count", "not a rotation",
          "non-integral segment")


@S.composite
def _pair_spec(draw):
    return dict(n=draw(S.integers(1, 12)), k=draw(S.integers(1, 3)),
                fmt=draw(S.sampled_from(["ascii", "binary_little_endian", "binary_big_endian"])),
                faces=draw(S.booleans()), colour=draw(S.sampled_from([("red", "green", "blue"), ("r", "g", "b")])),
                float_colour=draw(S.booleans()), seg=draw(S.sampled_from(SEG_NAMES)),
                seg_type=draw(S.sampled_from(["i4", "u1", "i2", "f4"])), extra=draw(S.booleans()),
                layout=draw(S.sampled_from(LAYOUTS)), seed=draw(SEEDS))


@S.composite
def _folder(draw):
    keys = draw(S.lists(S.tuples(S.sampled_from(SCENES), S.sampled_from(CONFIGS)), min_size=1, max_size=3,
                        unique=True))
    specs = [dict(draw(_pair_spec()), scene=s, config=c) for s, c in keys]
    for sp in specs:
        sp["k"] = min(sp["k"], sp["n"])
    present_s = sorted({s for s, _ in keys})
    pick = draw(S.sampled_from(["all", "one", "list", "int"]))
    if pick == "all":
        scenes = None
    elif pick == "one" or (pick == "int" and not present_s[0].isdigit()):
        scenes = present_s[0]
    elif pick == "int":
        scenes = int(present_s[0])
    else:
        scenes = draw(S.lists(S.sampled_from(present_s), min_size=1, unique=True))
    kept = [c for s, c in keys if scenes is None or s in ([str(scenes)] if isinstance(scenes, (str, int)) else scenes)]
    configs = None if draw(S.booleans()) else draw(S.lists(S.sampled_from(sorted(set(kept))), min_size=1, unique=True))
    return dict(specs=specs, scenes=scenes, configs=configs, clutter=draw(S.booleans()), damage=None, root_kind="ok")


def _natural(s):
    return (0, int(s), s) if s.isdigit() else (1, 0, s)


def _selected(specs, scenes, configs):
    """The specs of the pairs ``DynLab(root, scenes=scenes, configs=configs)`` holds, in its order."""
    sel = None if scenes is None else ([str(scenes)] if isinstance(scenes, (str, int)) else [str(s) for s in scenes])
    want = [sp for sp in specs if (sel is None or sp["scene"] in sel) and (configs is None or sp["config"] in configs)]
    return sorted(want, key=lambda sp: (_natural(sp["scene"]), _natural(sp["config"])))


def _damaged_name(kw, damage):
    """The file the error for ``damage`` must name: one of the first selected pair, or the misnamed file."""
    sp = _selected(kw["specs"], kw["scenes"], kw["configs"])[0]
    stem = f"{sp['scene']}-{sp['config']}"
    if damage == "misnamed":
        return "scan.ply"
    return f"{stem}.pose" if damage in ("lone pose", "pose count", "not a rotation") else f"{stem}.ply"


@S.composite
def _dynlab_cases(draw):
    """A valid folder, the same with one argument broken, or with one pair's files damaged (the error must
    name the damaged file)."""
    d = draw(S.sampled_from(range(2 * len(DAMAGE))))  # drawn first: the most evenly spread draw
    if d < len(DAMAGE):
        kw = draw(_folder())
        damage = DAMAGE[d]
        return Case({**kw, "damage": damage}, "invalid", (_damaged_name(kw, damage),), f"damage: {damage}")
    return draw(cases(_folder(), {
        "root_kind": values("missing", "a file", "empty", "int", "bytes", names=("root",)),
        "scenes": values("99", [], [1.5], 3.5, ["1", "zz"], names=("scenes",)),
        "configs": values("9", [], [None], 2.5, names=("configs",))}, valid_share=0.6))


def _damage_pair(root, spec, damage):
    """Damage the files of ``spec``'s pair in ``root``; return the name the error must give."""
    import numpy as np

    stem = f"{spec['scene']}-{spec['config']}"
    ply, pose = root / f"{stem}.ply", root / f"{stem}.pose"
    f, T = _cloud(spec)
    if damage == "lone ply":
        pose.unlink()
        return ply.name
    if damage == "lone pose":
        ply.unlink()
        return pose.name
    if damage == "misnamed":
        (root / "scan.ply").write_bytes(ply.read_bytes())
        return "scan.ply"
    if damage == "truncated":
        data = ply.read_bytes()
        end = data.index(b"end_header\n") + len(b"end_header\n")
        ply.write_bytes(data[:end + max(0, (len(data) - end) // 3 - 1)] if spec["fmt"] != "ascii" else data[:end + 1])
        return ply.name
    if damage == "bad header":
        ply.write_bytes(ply.read_bytes().replace(b"element vertex", b"element vertex x", 1))
        return ply.name
    if damage == "pose count":
        pose.write_text(_pose_text(np.concatenate([T, T[:1]]), spec["layout"]))
        return pose.name
    if damage == "not a rotation":
        bad = T.copy()
        bad[0, :3, :3] *= 1.05
        pose.write_text(_pose_text(bad, spec["layout"]))
        return pose.name
    if damage == "nan coordinate":
        f["y"][spec["n"] - 1] = np.nan
    elif damage == "negative segment":
        f[spec["seg"]] = f[spec["seg"]].astype(np.int32)
        f[spec["seg"]][spec["n"] - 1] = -1
    elif damage == "non-integral segment":
        f[spec["seg"]] = f[spec["seg"]].astype(np.float32) + 0.5
    elif damage == "colour out of range":
        c = spec["colour"][0]
        f[c] = np.full(spec["n"], 1.5, np.float32) if spec["float_colour"] else np.full(spec["n"], 300, np.int32)
    elif damage == "no colour":
        del f[spec["colour"][1]]
    elif damage == "no segment":
        del f[spec["seg"]]
    elif damage == "no z":
        del f["z"]
    _write_ply(ply, f, spec["fmt"])
    return ply.name


@fuzz("geodl.data.DynLab", examples=48)
@with_cases(lambda: _dynlab_cases())
def build_dynlab(specs, scenes, configs, clutter, damage, root_kind):
    import pathlib
    import tempfile

    import numpy as np
    import torch

    from geodl.data import DynLab

    tmp = pathlib.Path(tempfile.mkdtemp(prefix="geodl-fuzz-dynlab-"))
    root = tmp / "dynlab"
    root.mkdir()
    for sp in specs:
        f, T = _cloud(sp)
        faces = [[0, 0, 0], [0, 0, 0, 0]] if sp["faces"] else None
        _write_ply(root / f"{sp['scene']}-{sp['config']}.ply", f, sp["fmt"], faces)
        (root / f"{sp['scene']}-{sp['config']}.pose").write_text(_pose_text(T, sp["layout"]))
    if clutter:
        (root / "README.txt").write_text("DynLab")
        (root / ".1-1.ply").write_text("hidden, ignored")
        (root / "sub-1.ply").mkdir()  # a folder, not a file: ignored
    if damage is not None:
        _damage_pair(root, _selected(specs, scenes, configs)[0], damage)
    try:
        want = _selected(specs, scenes, configs) if root_kind == "ok" else []
    except TypeError:  # a selection of the wrong type: refused by DynLab
        want = []
    arg = {"ok": root, "missing": tmp / "nope", "a file": root / f"{specs[0]['scene']}-{specs[0]['config']}.pose",
           "empty": tmp / "empty", "int": 3, "bytes": bytes(root)}[root_kind]
    if root_kind == "empty":
        (tmp / "empty").mkdir()
        (tmp / "empty" / "notes.txt").write_text("")

    def call():
        ds = DynLab(arg, scenes=scenes, configs=configs)
        return ds, [ds[i] for i in range(len(ds))]

    def verify(res):
        ds, items = res
        expect([(s, c) for s, c, _, _ in ds.pairs] == [(sp["scene"], sp["config"]) for sp in want],
               f"pairs {[(s, c) for s, c, _, _ in ds.pairs]}")
        expect(len(ds) == len(want) and ds.root == root, "len / root")
        for x, sp in zip(items, want):
            f, T = _cloud(sp)
            expect((x.scene, x.config) == (sp["scene"], sp["config"]), "scene / config")
            expect(x.pos.dtype == torch.float32 and x.color.dtype == torch.float32 and x.segment.dtype == torch.int64
                   and x.pose.dtype == torch.float32, "dtypes")
            expect(np.array_equal(x.pos.numpy(), np.stack([f["x"], f["y"], f["z"]], 1)), "positions")
            rgb = np.stack([f[c] for c in sp["colour"]], 1)
            ref = rgb if sp["float_colour"] else rgb.astype(np.float32) / 255
            expect(np.array_equal(x.color.numpy(), ref.astype(np.float32)), "colours")
            expect(np.array_equal(x.segment.numpy(), f[sp["seg"]].astype(np.int64)), "segments")
            close(x.pose, torch.from_numpy(T.astype(np.float32)), atol=0, msg="poses")

    return call, verify


NAMES = sorted(n for n, e in REGISTRY.items() if e.builder.split(":")[0].endswith("test_fuzz_dynlab"))


@pytest.mark.parametrize("name", NAMES)
def test_fuzz(name):
    check_entry(name)
