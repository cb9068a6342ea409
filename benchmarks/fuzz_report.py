"""Run the whole-API fuzz suite (tests/fuzz) with more examples and write the counts.

Usage::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/fuzz_report.py [--scale 5] [--workers 2]
        [--out benchmarks/results/fuzz_counts.json] [--only geodl.ops.]

The same harness and strategies as the test suite (``tests/fuzz/_harness.py``): derandomized
hypothesis cases, run in memory-limited worker processes with a wall-clock timeout, each outcome
classified as ok / clean (ValueError or TypeError naming the argument) / other / wrong / hang.
``--scale`` multiplies every entry's number of examples (the test suite runs ``--scale 1``).
The JSON holds the totals, and per entry the counts, the time taken and up to six sample cases of
every bad outcome. Exit status 1 when any other / wrong / hang outcome was seen.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODULES = ("ops", "groups", "nn", "testing", "data", "bench", "tinv", "dgcnn", "modelnet", "shapes", "spherical_conv", "vinet", "categories", "vinet_bench", "poincare", "images", "resnet", "soft_reps", "soft_layers")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scale", type=float, default=5.0, help="examples per entry, as a multiple of the suite's")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--timeout", type=float, default=30.0, help="seconds one call may take")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "fuzz_counts.json")
    p.add_argument("--only", default="", help="run the entries whose name starts with this prefix")
    args = p.parse_args(argv)
    os.environ["GEODL_FUZZ_SCALE"] = str(args.scale)
    os.environ["GEODL_FUZZ_WORKERS"] = str(args.workers)
    os.environ["GEODL_FUZZ_TIMEOUT"] = str(args.timeout)
    sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
    H = importlib.import_module("fuzz._harness")
    for m in MODULES:
        importlib.import_module(f"fuzz.test_fuzz_{m}")
    names = sorted(n for n in H.REGISTRY if n.startswith(args.only))
    t0 = time.monotonic()
    try:
        for name in names:
            rec = H.run_entry(name)
            c = rec["counts"]
            print(f"{name:45s} tried {c['tried']:5d}  ok {c['ok']:5d}  clean {c['clean']:5d}  other {c['other']:3d}  "
                  f"wrong {c['wrong']:3d}  hang {c['hang']:2d}  ({rec['seconds']} s)", flush=True)
    finally:
        H.close_pool()
    report = H.report()
    report["settings"] = {"scale": args.scale, "workers": args.workers, "timeout_s": args.timeout,
                          "address_space_gib": H.AS_LIMIT / (1 << 30), "seconds": round(time.monotonic() - t0, 1)}
    H.write_report(args.out, report["entries"])
    # write_report recomputes the totals; add the settings
    import json

    doc = json.loads(args.out.read_text())
    doc["settings"] = report["settings"]
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    t = report["totals"]
    print(f"{'TOTAL':45s} tried {t['tried']:5d}  ok {t['ok']:5d}  clean {t['clean']:5d}  other {t['other']:3d}  "
          f"wrong {t['wrong']:3d}  hang {t['hang']:2d}  harness {t['harness']}  -> {args.out}")
    return 1 if (t["other"] or t["wrong"] or t["hang"] or t["harness"]) else 0


if __name__ == "__main__":
    sys.exit(main())
