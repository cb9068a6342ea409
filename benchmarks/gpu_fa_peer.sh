#!/usr/bin/env bash
# The FA paper's own n-body script as the peer of geodl's FA-GNN (issue 17), on geodl's reference data.
#
#   SECONDS_PER_RUN=480 OUT=/some/dir bash benchmarks/gpu_fa_peer.sh     # on the GPU machine
#   EPOCHS=1 DEVICE=cpu OUT=/tmp/x bash benchmarks/gpu_fa_peer.sh        # CPU smoke test (about 2 min)
#
# The peer is not part of geodl and is never copied into it: put the FA repository's nbody/ folder
# (github omri1348/Frame-Averaging, run as released) under PEER, an ignored folder, e.g. from a snapshot:
#   G=<the snapshot's git dir>; for f in $(git --git-dir=$G ls-tree -r --name-only HEAD nbody | grep -v -e pycache -e /loc_ -e /vel_); do
#     mkdir -p peers/Frame-Averaging/$(dirname $f); git --git-dir=$G show HEAD:$f > peers/Frame-Averaging/$f; done
# and carry peers/ to the device. This script works on a copy (WORK) and changes only what current torch
# needs, at run time:
#   - torch.symeig (removed from torch) -> torch.linalg.eigh (the same ascending eigenvalues/vectors);
#   - the script imports GPUtil to pick a GPU: a stub module returning device 0 is put on its path.
# Data: benchmarks/fa_peer_data.py writes geodl's --reference-data splits (numpy seed 43; the charges equal
# the ones the repository ships) in the script's .npy format. The script then trains as released (its own
# loop, lr 1e-3, nf 60, constant rate, test every 5 epochs) for EPOCHS or until SECONDS_PER_RUN; its
# losess.json (sic; train / val / test curves, best val / test) is copied to $OUT/fa_peer_losses.json.
# The released script does not resume: each call starts again from epoch 0.
source "$(dirname "$0")/_gpu_env.sh"
PEER="${PEER:-peers/Frame-Averaging/nbody}"
WORK="${WORK:-/tmp/geodl_fa_peer}"
[ -f "$PEER/nbody.py" ] || { echo "no peer at $PEER (see the header of $0)"; exit 2; }
rm -rf "$WORK" && cp -r "$PEER" "$WORK" || exit 1
sed -i 's/torch\.symeig(\(.*\),True)/torch.linalg.eigh(\1)/' "$WORK/n_body_system/model_FA.py"
grep -q "torch.symeig" "$WORK/n_body_system/model_FA.py" && { echo "symeig left in model_FA.py"; exit 1; }
mkdir -p "$WORK/_shim"
printf 'def getAvailable(*args, **kwargs):\n    return [0]\n' > "$WORK/_shim/GPUtil.py"
python benchmarks/fa_peer_data.py --out "$WORK/n_body_system/dataset" || exit 1
extra=()
[ "$DEVICE" = "cpu" ] && extra=(--no-cuda)
( cd "$WORK" && PYTHONPATH="$WORK/_shim:$WORK" timeout "$LIMIT" python nbody.py --exp_name geodl_peer --nf 60 \
    --lr 1e-3 --epochs "$EPOCHS" "${extra[@]}" ) > "$DEST/fa_peer.log" 2>&1
status=$?
[ $status -eq 124 ] && { echo "stopped after $LIMIT s (as planned)"; status=0; }
cp "$WORK/n_body_system/logs/geodl_peer/losess.json" "$DEST/fa_peer_losses.json" 2>/dev/null \
    || echo "no losess.json written (see $DEST/fa_peer.log)"
tail -n 5 "$DEST/fa_peer.log"
exit $status
