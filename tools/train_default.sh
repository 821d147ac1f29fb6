#!/usr/bin/env bash
# Trains the candidate default networks side by side on one GPU (or the CPU),
# each for the same wall-clock budget, and packs each run folder into a tarball.
#   tools/train_default.sh PACKED_DATA OUT_DIR SECONDS [ARCH ...]
# The default weights in models/ came from:  tools/train_default.sh gpu/bbbc050.npz $OUT 330 lean8 lean12 lean16
set -euo pipefail
data=$1; out=$2; secs=$3; shift 3
archs=("${@:-lean8}")
here=$(cd "$(dirname "$0")/.." && pwd)
export PYTHONPATH="$here/bindings/python${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
py=${PYTHON:-python3}
mkdir -p "$out"
batch=${BATCH:-8}
pids=()
for a in "${archs[@]}"; do
  "$py" -m qcanet.train fit "$data" -o "$out/run-$a" --arch "$a" --iters 1000000 --time-limit "$secs" \
      --batch "$batch" --val-every "${VAL_EVERY:-250}" --seg-every 2 --workers "${WORKERS:-4}" \
      --epoch-patches 400 --quiet --seed "${SEED:-1}" --lr "${LR:-2e-3}" \
      ${INIT_FROM:+--init "$INIT_FROM/run-$a/best.pt"} > "$out/train-$a.log" 2>&1 &
  pids+=($!)
done
rc=0
for p in "${pids[@]}"; do wait "$p" || rc=1; done
for a in "${archs[@]}"; do
  cp "$out/train-$a.log" "$out/run-$a/" || true
  tar -C "$out" -czf "$out/run-$a.tgz" --exclude last.pt "run-$a"
  tail -3 "$out/train-$a.log"
done
exit $rc
