#!/usr/bin/env bash
# The papers' n-body protocol on one GPU (issue 17): several trainings side by side, each for as many
# epochs as fit in SECONDS, resumable across calls (run folders under $RUNS; the same command continues).
#
#   SECONDS_PER_RUN=480 OUT=/some/dir bash benchmarks/gpu_nbody.sh
#
# Runs, all on the EGNN reference's exact data (--reference-data: numpy seed 43, 3,000 / 2,000 / 2,000),
# at a constant learning rate (--lr-schedule none) for up to 10,000 epochs, evaluated every 25:
#   - FA-GNN as in the paper (positions decoded directly, latent frames centred, lr 1e-3), seeds 0 and 1;
#   - EGNN with the reference's fixed squared-distance edge feature (lr 5e-4), seed 0.
# Each writes <OUT>/nbody_<name>.json (+ csv, png: the learning curves) with epochs_reached.
# The FA repository's own n-body script, the peer the issue names, runs in its own call:
# benchmarks/gpu_fa_peer.sh (same data, same time limit).
source "$(dirname "$0")/_gpu_env.sh"
RUNS="${RUNS:-$DEST/runs}"
mkdir -p "$RUNS"
# the CLI without an installed console script (the device image runs geodl from the checkout)
geodl() { python -c 'import sys; from geodl.cli import main; sys.exit(main(sys.argv[1:]))' "$@"; }
common=(--reference-data --lr-schedule none --epochs "$EPOCHS" --eval-every 25 --device "$DEVICE"
        --run-dir "$RUNS" --out "$DEST" --time-limit "$LIMIT" --no-progress)
pids=()
for seed in 0 1; do
    geodl bench nbody --models FA-GNN --fagnn-output direct --fagnn-latent centered --seed "$seed" \
        --results-name "nbody_fagnn_direct_centered_seed$seed" "${common[@]}" \
        > "$DEST/nbody_fagnn_seed$seed.log" 2>&1 &
    pids+=($!)
done
geodl bench nbody --models EGNN --egnn-input-distance --seed 0 --results-name nbody_egnn_dist_seed0 \
    "${common[@]}" > "$DEST/nbody_egnn_seed0.log" 2>&1 &
pids+=($!)
status=0
for p in "${pids[@]}"; do wait "$p" || status=1; done
tail -n 6 "$DEST"/nbody_*seed*.log
exit $status
