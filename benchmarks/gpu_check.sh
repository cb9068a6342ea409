#!/usr/bin/env bash
# One GPU session for geodl: the spherical-harmonics benchmark (issue 5), every CUDA-marked test
# (the ops' Triton kernels and tests/test_cuda_methods.py: FA-GNN/EGNN incl. the sync-free step under
# torch.cuda.set_sync_debug_mode("error"), VI-Net, spherical maps, Poincare ResNet incl. bf16 autocast,
# soft equivariance), the ops benchmark (issue 3) and the n-body training step eager / sync-free /
# CUDA graphs (issue 17), each against its peers in the same run.
#   bash benchmarks/gpu_check.sh                  # writes benchmarks/results/{sh,ops,nbody_step}_cuda.json
#   OUT=/some/dir bash benchmarks/gpu_check.sh    # writes the JSON and the logs under $OUT
# Runs from any directory; uses .venv when present. Sized to end well inside one 600 s device call
# (at most 150 + 200 + 120 + 90 s; about half of that in practice). Exit status: non-zero if a step failed.
# The long n-body protocol run is a separate call: benchmarks/gpu_nbody.sh (its peer: gpu_fa_peer.sh).
source "$(dirname "$0")/_gpu_env.sh"
status=0

python - <<'PY' | tee "$DEST/gpu_env.txt"
import torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "device",
      torch.cuda.get_device_name() if torch.cuda.is_available() else "NONE")
for name in ("triton", "e3nn", "torch_geometric", "sphericart.torch", "roma"):
    try:
        mod = __import__(name, fromlist=["_"])
        print(name, getattr(mod, "__version__", "?"))
    except Exception as exc:  # noqa: BLE001
        print(name, "missing:", exc)
PY
python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" || { echo "no CUDA device"; exit 2; }
# the tests need geodl's pytest plugin (an entry point): install geodl without dependencies when the
# environment runs it from a plain checkout (e.g. a bare GPU image with PYTHONPATH set)
python -c "import importlib.metadata as md, sys; sys.exit(0 if any(e.name == 'geodl' for e in md.entry_points(group='pytest11')) else 1)" \
    || { python -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --target /tmp/geodl_site . \
         && export PYTHONPATH="/tmp/geodl_site:$PYTHONPATH"; }

# 1. spherical harmonics vs sphericart-torch and e3nn, 1M points at lmax 10/20/40; each tool in its
#    own process (sphericart's lmax-40 backward has crashed the CUDA context before)
timeout 150 python benchmarks/sh_bench.py --device cuda --child-timeout 80 --out "$DEST/sh_cuda.json" 2>&1 \
    | tee "$DEST/sh_cuda_bench.txt" || status=1

# 2. every cuda-marked test (Triton kernels compiled for the real device, CUDA inductor, plugin, and the
#    CUDA paths of every landed method: tests/test_cuda_methods.py; modules that import a package the
#    device image lacks fail to collect and are reported, the rest still run)
timeout 200 python -m pytest -q -rs -p no:cacheprovider --continue-on-collection-errors tests -m cuda 2>&1 \
    | tee "$DEST/cuda_tests.txt" || status=1

# 3. scatter/segment/gather/eigh at the full sizes vs torch and PyG
timeout 120 python benchmarks/ops_bench.py --device cuda --out "$DEST/ops_cuda.json" 2>&1 \
    | tee "$DEST/ops_cuda_bench.txt" || status=1

# 4. the FA-GNN / EGNN training step: eager, sync-free, and captured by CUDA graphs (goal <= 2 ms), with
#    the captured step checked against eager from the same weights (max_param_diff_vs_syncfree)
timeout 90 python benchmarks/nbody_step_time.py --device cuda --out "$DEST/nbody_step_cuda.json" 2>&1 \
    | tee "$DEST/nbody_step_cuda.txt" || status=1
exit $status
