# Shared preamble of the GPU scripts (gpu_check.sh, gpu_nbody.sh, gpu_fa_peer.sh); sourced, not run.
# From the repository root, with .venv when present and the checkout on PYTHONPATH (the device image runs
# geodl from the checkout). Sets DEST (= $OUT, default benchmarks/results) and, for the training scripts,
# LIMIT (= $SECONDS_PER_RUN, default 480 s), EPOCHS (default 10,000) and DEVICE (default cuda).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
[ -f .venv/bin/activate ] && source .venv/bin/activate
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
DEST="${OUT:-benchmarks/results}"
LIMIT="${SECONDS_PER_RUN:-480}"
EPOCHS="${EPOCHS:-10000}"
DEVICE="${DEVICE:-cuda}"
mkdir -p "$DEST"
