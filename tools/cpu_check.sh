#!/usr/bin/env bash
# One prepared run of qcanet's CPU path on another x86-64 machine (here: the host CPU of the
# GPU machine a session is lent, which has instruction sets this project's 2-core AVX2 EPYC
# lacks, such as AVX-512 VNNI). What it measures, on 2 cores pinned to two physical cores
# (the issue's "2 cores") and then on all cores:
#   - which int8/bf16 instruction sets the CPU has;
#   - benches/providers.py: the OpenVINO build's default provider, OpenVINO fp32 and int8 (network,
#     post-processing, per volume over a folder, one volume as a whole command);
#   - accuracy (qcanet evaluate) of fp32 and int8 on the validation embryos, and the int8 labels
#     (brought back in $OUT to compare with another machine's);
# Writes report.txt, and labels-int8.tar.zst, to $OUT.
#
# Needs, from the repository root:
#   target/release/qcanet, or gpu/xfer/qcanet.zst
#   the OpenVINO runtime: .cache/onnxruntime-openvino/, or gpu/xfer/onnxruntime-openvino.tar.zst
#   $DATA/images/*.tif and $DATA/instances/*.tif (default gpu/data: Emb10 + Emb11)
#   zstd, or gpu/bin/zstd with its libraries (the GPU machine has none)
# Dry run here: DATA=gpu/data ROUNDS=1 OUT=/tmp/cpu-check bash tools/cpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${OUT:-$ROOT/gpu/cpu-report}
DATA=${DATA:-$ROOT/gpu/data}
ROUNDS=${ROUNDS:-3}
VOXEL=${VOXEL:-1.75,0.8,0.8}
WORK=${WORK:-/tmp/qcanet-cpu-check}
rm -rf "$WORK" && mkdir -p "$WORK" "$OUT"
REPORT=$OUT/report.txt
: > "$REPORT"
say() { echo "$*" | tee -a "$REPORT"; }
ZSTD=(zstd)
command -v zstd > /dev/null || ZSTD=(env LD_LIBRARY_PATH="$ROOT/gpu/bin" "$ROOT/gpu/bin/zstd")

BIN=$ROOT/target/release/qcanet
if [ ! -x "$BIN" ]; then
    BIN=$WORK/qcanet
    "${ZSTD[@]}" -d -q gpu/xfer/qcanet.zst -o "$BIN" && chmod +x "$BIN"
fi
OV=$ROOT/.cache/onnxruntime-openvino
if [ ! -f "$OV/libonnxruntime.so" ]; then
    "${ZSTD[@]}" -d -q -c gpu/xfer/onnxruntime-openvino.tar.zst | tar -C "$WORK" -xf -
    OV=$WORK/onnxruntime-openvino
fi
export ORT_DYLIB_PATH=$OV/libonnxruntime.so

say "== machine"
say "$(lscpu | grep -E '^(Model name|Socket|Core|Thread|CPU\(s\))' | tr -s ' ')"
say "int8/bf16 instruction sets: $(grep -o -w -E 'avx2|avx512f|avx512_vnni|avx_vnni|avx512_bf16|amx_int8|amx_bf16' /proc/cpuinfo | sort -u | tr '\n' ' ')"
# two CPUs on two different physical cores (not two hyperthreads of one)
PAIR=$(lscpu -p=CPU,CORE | grep -v '^#' | sort -t, -k2,2n -u | head -2 | cut -d, -f1 | paste -sd,)
say "2-core runs pinned to CPUs $PAIR"
# taskset where util-linux has it, else the same through Python
if command -v taskset > /dev/null; then PIN=(taskset -c "$PAIR"); else
    PIN=(python3 -c "import os, sys; os.sched_setaffinity(0, {int(c) for c in sys.argv[1].split(',')}); os.execvp(sys.argv[2], sys.argv[2:])" "$PAIR"); fi
say "$("$BIN" info 2>&1 | head -3)"
FILES=("$DATA"/images/*.tif)
say "volumes: ${#FILES[@]} in $DATA/images"

say ""
say "== benches/providers.py on 2 cores ($ROUNDS rounds)"
QCANET_BENCH_ROUNDS=$ROUNDS "${PIN[@]}" python3 benches/providers.py "$BIN" - "$ORT_DYLIB_PATH" "$DATA/images" 2>&1 | tee -a "$REPORT" || say "providers.py failed (status $?): fp32 labels differ between runtimes, or it could not run"

say ""
say "== accuracy on 2 cores (qcanet evaluate against $DATA/instances)"
for p in fp32 int8; do
    "${PIN[@]}" "$BIN" segment "$DATA/images" -o "$WORK/labels-$p" -q --device cpu --precision "$p" --voxel-size "$VOXEL" --timings > "$WORK/timings-$p.txt"
    say "$p: $(grep '^timings' "$WORK/timings-$p.txt")"
    "$BIN" evaluate "$WORK/labels-$p" "$DATA/instances" -q --json "$WORK/eval-$p.json" > /dev/null
    say "$p: $(python3 -c "import json,sys; m=json.load(open(sys.argv[1])); m=m.get('mean', m); print(' '.join(f'{k}={m[k]:.4f}' for k in ('iou','seg','mucov','f1') if k in m))" "$WORK/eval-$p.json")"
done
tar -C "$WORK" -cf - labels-int8 | "${ZSTD[@]}" -q -f -19 -o "$OUT/labels-int8.tar.zst"

say ""
say "== all $(nproc) cores, folder of ${#FILES[@]} (one run each)"
for p in fp32 int8; do
    "$BIN" segment "$DATA/images" -o "$WORK/all-$p" -q --device cpu --precision "$p" --voxel-size "$VOXEL" --timings > "$WORK/all-$p.txt"
    say "$p: $(grep '^timings' "$WORK/all-$p.txt")"
done
say "done"
