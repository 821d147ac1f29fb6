#!/usr/bin/env bash
# One prepared run of qcanet on an NVIDIA GPU: does the CUDA provider load, are the labels
# the CPU's, how fast is it. Writes report.md, report.json and the logs to $OUT.
#
# Run from the repository root on the GPU machine, with:
#   target/release/qcanet, target/release/libqcanet.so   (built here: make build)
#   the GPU runtime: gpu/pack/*.part-* + SHA256SUMS      (make runtime-gpu-pack), or its
#                    pieces spread over gpu/store/ and gpu/xfer/ (several transfers),
#                    or an unpacked folder in QCANET_ORT_GPU
#   validation data: $DATA/images/*.tif + $DATA/instances/*.tif (default: ../shared/data/
#                    bbbc050/train restricted to Emb10 + Emb11, else gpu/data)
# The NVIDIA libraries (cuDNN, cuBLAS, ...) are found where the machine has them (system
# CUDA or a Python environment's nvidia/*/lib), as qcanet does for any user.
#
#   OUT=/tmp/report bash tools/gpu_check.sh
# How this workplace's GPU machine got it (64 MiB per transfer, kept between calls only
# while warm, no zstd there): `make runtime-gpu-pack`; three calls each carrying gpu/xfer
# holding one piece, whose command moves it to gpu/store/; a last call carrying gpu/xfer
# (last piece + SHA256SUMS), target/release/{qcanet,libqcanet.so}, gpu/data (Emb10/Emb11
# images/ and instances/) and gpu/bin (zstd and the libraries `ldd` lists for it), with
#   DATA=$PWD/gpu/data bash tools/gpu_check.sh
# A dry run of the whole script on a machine without a GPU (every "GPU" step on the CPU,
# a smaller large volume):  GPU_DEV=cpu BIG_DIMS=51,256,256 bash tools/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${OUT:-$ROOT/gpu/report}
mkdir -p "$OUT"
WORK=${WORK:-/tmp/qcanet-gpu-check}
rm -rf "$WORK" && mkdir -p "$WORK"
BIN=$ROOT/target/release/qcanet
LOG=$OUT/log.txt
: > "$LOG"
say() { echo "[$(date +%T)] $*" | tee -a "$LOG"; }
T0=$(date +%s.%N)
elapsed() { python3 -c "import time; print(f'{time.time() - $T0:.1f}')"; }

GPU_DEV=${GPU_DEV:-cuda}
BIG_DIMS=${BIG_DIMS:-153,1024,1024}
say "== machine"
(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo "no NVIDIA GPU") | tee "$WORK/gpu-name.txt" | tee -a "$LOG"
nproc | sed 's/^/cpu cores: /' | tee -a "$LOG"

# -- the runtime: verify every piece, then unpack
if [ -z "${QCANET_ORT_GPU:-}" ]; then
    say "== GPU runtime from pieces"
    PIECES=$WORK/pieces
    mkdir -p "$PIECES"
    for d in gpu/pack gpu/store gpu/xfer; do
        [ -d "$d" ] && find "$d" -maxdepth 1 -type f \( -name '*.part-*' -o -name SHA256SUMS \) -exec ln -sf "$ROOT/{}" "$PIECES/" \;
    done
    (cd "$PIECES" && sha256sum -c SHA256SUMS) | tee -a "$LOG"
    mkdir -p "$WORK/rt"
    # zstd from the machine, else one carried in gpu/bin with its libraries
    ZSTD=(zstd)
    command -v zstd > /dev/null || ZSTD=(env LD_LIBRARY_PATH="$ROOT/gpu/bin" "$ROOT/gpu/bin/zstd")
    cat "$PIECES"/onnxruntime-gpu.tar.zst.part-* | "${ZSTD[@]}" -d -q --long=27 | tar -C "$WORK/rt" -xf -
    export QCANET_ORT_GPU=$WORK/rt/onnxruntime-gpu
fi
ls -l "$QCANET_ORT_GPU" | tee -a "$LOG"
# CPU runs use the same ONNX Runtime build (its CPU provider), so only the device differs
export ORT_DYLIB_PATH=$QCANET_ORT_GPU/libonnxruntime.so

if [ "$GPU_DEV" = cuda ]; then
    say "== provider check (qcanet info --device cuda)"
    INFO=$("$BIN" info --device cuda 2>&1 || true)
    echo "$INFO" | tee -a "$LOG" | head -4
    if ! grep -q "on cuda" <<< "$INFO"; then
        say "FAIL: the CUDA provider did not start; diagnostics:"
        "$BIN" info --device cuda >> "$LOG" 2>&1 || true
        python3 -c "import site, glob; [print(d) for s in site.getsitepackages() for d in sorted(glob.glob(s + '/nvidia/*/lib'))]" >> "$LOG" 2>&1 || true
        NV=$(python3 -c "import site, glob; print(':'.join(d for s in site.getsitepackages() for d in sorted(glob.glob(s + '/nvidia/*/lib'))))" 2>/dev/null || true)
        LD_LIBRARY_PATH=$NV ldd "$QCANET_ORT_GPU/libonnxruntime_providers_cuda.so" >> "$LOG" 2>&1 || true
        ldconfig -p | grep -E "libcuda\.so|libcudnn|libcublas" >> "$LOG" 2>&1 || true
        exit 1
    fi
fi

# -- data
DATA=${DATA:-}
if [ -z "$DATA" ]; then
    if [ -d ../shared/data/bbbc050/train/images ]; then
        DATA=$WORK/data
        mkdir -p "$DATA/images" "$DATA/instances"
        for f in ../shared/data/bbbc050/train/images/Emb1[01]_*.tif; do
            ln -s "$(readlink -f "$f")" "$DATA/images/"
            ln -s "$(readlink -f "${f/images/instances}")" "$DATA/instances/"
        done
    else
        DATA=$ROOT/gpu/data
    fi
fi
NVOL=$(ls "$DATA"/images/*.tif | wc -l)
say "== data: $NVOL validation volumes in $DATA"
VOX=1.75,0.8,0.8

run_folder() { # name device precision [folder] -> labels in $WORK/$name, timings line in $WORK/$name.timings
    local name=$1 dev=$2 prec=$3 in=${4:-$DATA/images}
    "$BIN" segment "$in" -o "$WORK/$name" --voxel-size $VOX --device "$dev" --precision "$prec" --timings -q \
        > "$WORK/$name.timings" 2>> "$LOG"
    say "$name: $(cat "$WORK/$name.timings")"
}

say "== CPU (all $(nproc) cores), fp32, the $NVOL volumes"
run_folder cpu cpu fp32
run_folder cpu2 cpu fp32
# A folder five times the validation set (the same 22 volumes under 5 names): the
# steady state of a long folder run, past cuDNN's one-off algorithm search per shape.
REP=$WORK/rep
mkdir -p "$REP"
for f in "$DATA"/images/*.tif; do
    n=$(basename "$f"); ln -s "$(readlink -f "$f")" "$REP/$n"
    for r in 1 2 3 4; do ln -s "$(readlink -f "$f")" "$REP/r${r}_$n"; done
done
NREP=$(ls "$REP" | wc -l)

variant() { # name precision: a CUDA pass over $REP, labels compared with the CPU's
    local name=$1
    run_folder "$name" "$GPU_DEV" "$2" "$REP"
    python3 tools/compare_labels.py "$WORK/$name" "$WORK/cpu" --json "$WORK/agree_$name.json" | tee -a "$LOG"
    "$BIN" evaluate "$WORK/$name" "$DATA/instances" --json "$WORK/eval_$name.json" > "$WORK/eval_$name.txt"
    say "$name accuracy: $(tail -1 "$WORK/eval_$name.txt")"
}
say "== CUDA over $NREP volumes: fp32 (three passes), tf32 (two)"
variant gpu fp32
variant gpu2 fp32
variant gpu3 fp32
variant tf32 tf32
variant tf32b tf32
say "== auto picks the GPU"
"$BIN" segment "$(ls "$DATA"/images/*.tif | head -1)" -o "$WORK/auto.tif" --voxel-size $VOX --device auto 2>&1 | tail -1 | tee "$WORK/auto.txt" | tee -a "$LOG"
"$BIN" evaluate "$WORK/cpu" "$DATA/instances" --json "$WORK/eval_cpu.json" > "$WORK/eval_cpu.txt"
say "cpu accuracy: $(tail -1 "$WORK/eval_cpu.txt")"

say "== Python binding on CUDA"
QCANET_LIBRARY=$ROOT/target/release/libqcanet.so PYTHONPATH=$ROOT/bindings/python python3 - "$DATA" "$WORK" "$GPU_DEV" <<'EOF' 2>&1 | tee -a "$LOG" | tee "$WORK/python.txt"
import sys, glob, time, numpy as np, tifffile, qcanet
data, work = sys.argv[1], sys.argv[2]
f = sorted(glob.glob(data + "/images/*.tif"))[-1]
v = tifffile.imread(f)
m = qcanet.Model(device=sys.argv[3])
t = time.time(); lab = m.segment(v, voxel_size=(1.75, 0.8, 0.8)); t = time.time() - t
cli = tifffile.imread(work + "/gpu2/" + f.split("/")[-1])
print(f"python: device={m.device} nuclei={int(lab.max())} cli_nuclei={int(cli.max())} identical={bool((lab == cli).all())} first_call_s={t:.3f}")
EOF

say "== $BIG_DIMS volume (mirrored $(ls "$DATA"/images/*.tif | tail -1 | xargs basename))"
python3 tools/mirror_volume.py "$(ls "$DATA"/images/*.tif | tail -1)" "$WORK/big.tif" --dims $BIG_DIMS | tee -a "$LOG"
/usr/bin/env time -v true > /dev/null 2>&1 && TIMEV="/usr/bin/env time -v" || TIMEV=""
big() { # name device [segment options...]
    local name=$1 dev=$2; shift 2
    local s=$(date +%s.%N)
    timeout 150 $TIMEV "$BIN" segment "$WORK/big.tif" -o "$WORK/big_$name.tif" --voxel-size $VOX --device "$dev" --timings -q "$@" \
        > "$WORK/big_$name.timings" 2> "$WORK/big_$name.err" || { cat "$WORK/big_$name.err" >> "$LOG"; return 1; }
    local e=$(date +%s.%N)
    echo "command_s=$(python3 -c "print(f'{$e - $s:.2f}')") $(grep -o 'Maximum resident set size[^0-9]*[0-9]*' "$WORK/big_$name.err" | grep -o '[0-9]*$' | sed 's/^/peak_rss_kb=/')" >> "$WORK/big_$name.timings"
    say "big $name ($*): $(tr '\n' ' ' < "$WORK/big_$name.timings")"
}
big gpu $GPU_DEV
big gpu2 $GPU_DEV
big gpu3 $GPU_DEV

say "== report"
python3 - "$WORK" "$OUT" "$NVOL" <<'EOF' | tee -a "$LOG"
import json, re, sys, pathlib
work, out, nvol = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), int(sys.argv[3])
def timings(name):
    p = work / f"{name}.timings"
    if not p.exists():
        return None
    return {k: (float(v) if re.fullmatch(r"[-0-9.]+", v) else v) for k, v in re.findall(r"(\w+)=(\S+)", p.read_text())}
def ev(name):
    d = json.loads((work / f"eval_{name}.json").read_text())["mean"]
    return {k: round(v, 4) for k, v in d.items() if isinstance(v, float)}
rep = {
    "gpu": (work / "gpu-name.txt").read_text().strip(),
    "volumes": nvol,
    "timings": {n: timings(n) for n in ["cpu", "cpu2", "gpu", "gpu2", "gpu3", "tf32", "tf32b", "big_gpu", "big_gpu2", "big_gpu3"]},
    "agreement": {n: {k: v for k, v in json.loads((work / f"agree_{n}.json").read_text()).items() if k != "files"}
                  for n in ["gpu", "gpu2", "gpu3", "tf32", "tf32b"] if (work / f"agree_{n}.json").exists()},
    "agreement_fp32_files": json.loads((work / "agree_gpu2.json").read_text())["files"],
    "accuracy": {n: ev(n) for n in ["cpu", "gpu", "gpu2", "gpu3", "tf32", "tf32b"] if (work / f"eval_{n}.json").exists()},
    "auto": (work / "auto.txt").read_text().strip(),
    "python": (work / "python.txt").read_text().strip(),
}
(out / "report.json").write_text(json.dumps(rep, indent=1))
t = rep["timings"]
lines = ["# qcanet GPU check", "", "GPU: " + rep["gpu"], "",
         f"{nvol} validation volumes (Emb10 + Emb11), --voxel-size 1.75,0.8,0.8.", "",
         "| run | device | median network ms | median prepare ms | median post ms | wall ms per volume |", "|---|---|---|---|---|---|"]
for n, v in t.items():
    if v:
        lines.append(f"| {n} | {v.get('device')} | {v.get('median_network_ms')} | {v.get('median_prepare_ms')} | {v.get('median_post_ms')} | {v.get('wall_per_volume_ms')} |")
lines += ["", "Labels vs CPU (min agreement over files): " + ", ".join(f"{n} {a['min_agreement']:.6f}" for n, a in rep["agreement"].items()),
          "", "Accuracy (mean of volumes): " + json.dumps(rep["accuracy"]), "", "auto: " + rep["auto"], "", rep["python"]]
(out / "report.md").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
EOF
tar -C "$WORK" -czf "$OUT/details.tgz" --exclude='*.tif' --exclude=pieces --exclude=rt --exclude=data --exclude=cpu --exclude=cpu2 --exclude=gpu --exclude=gpu2 --exclude=gpu3 --exclude=tf32 --exclude=tf32b . || true
say "done in $(elapsed) s"
