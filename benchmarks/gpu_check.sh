#!/usr/bin/env bash
# One GPU session for geodl.ops (issue 3): the CUDA tests, then the ops benchmark on CUDA.
#   bash benchmarks/gpu_check.sh            # writes benchmarks/results/ops_cuda.json
#   OUT=/some/dir bash benchmarks/gpu_check.sh   # writes $OUT/ops_cuda.json and the test logs there
# Runs from any directory; uses .venv when present; fits one 600 s device call (300 s tests + 280 s
# bench). Exit status: non-zero if the tests or the benchmark failed.
set -uo pipefail
cd "$(dirname "$0")/.."
[ -f .venv/bin/activate ] && source .venv/bin/activate
DEST="${OUT:-benchmarks/results}"
mkdir -p "$DEST"
status=0

python - <<'PY' | tee "$DEST/gpu_env.txt"
import torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "device",
      torch.cuda.get_device_name() if torch.cuda.is_available() else "NONE")
try:
    import triton
    print("triton", triton.__version__)
except ImportError as exc:
    print("triton missing:", exc)
PY
python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" || { echo "no CUDA device"; exit 2; }

# CUDA tests of the ops (the cuda-marked modules; CPU tests are the normal suite's job)
timeout 300 python -m pytest -q -rs -p no:cacheprovider tests/ops -m cuda \
    --junitxml="$DEST/ops_cuda_tests.xml" 2>&1 | tee "$DEST/ops_cuda_tests.txt" || status=1

# benchmark at the BENCHMARKS.md sizes (ratios against torch and PyG measured in the same run)
timeout 280 python benchmarks/ops_bench.py --device cuda --out "$DEST/ops_cuda.json" 2>&1 \
    | tee "$DEST/ops_cuda_bench.txt" || status=1
exit $status
