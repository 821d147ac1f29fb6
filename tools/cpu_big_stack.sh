#!/usr/bin/env bash
# The 153 x 1024 x 1024 stack (mirrored Emb11_t501) segmented block by block (--blocks auto, the
# default int8 under OpenVINO) on 2 cores pinned to two physical cores, then on all cores: peak
# memory, wall, Mvoxel/s. For another machine's CPU (the lent GPU machine's host: docs/cpu/);
# run from the repository root carrying gpu/xfer (qcanet.zst, onnxruntime-openvino.tar.zst),
# gpu/data (images/Emb11_t501.tif) and gpu/bin (zstd), with python3 + numpy + tifffile there:
#   OUT=/tmp/report bash tools/cpu_big_stack.sh          (D=51,300,300 for a quick dry run;
#   PY=.venv/bin/python where the system python has no numpy)
set -eo pipefail; OUT=${OUT:?set OUT to a report folder}; mkdir -p "$OUT"; PY=${PY:-python3}; W=/tmp/q; rm -rf $W; mkdir -p $W; Z="env LD_LIBRARY_PATH=$PWD/gpu/bin $PWD/gpu/bin/zstd"; D=${D:-153,1024,1024}
$Z -d -q gpu/xfer/qcanet.zst -o $W/qcanet; chmod +x $W/qcanet; $Z -d -q -c gpu/xfer/onnxruntime-openvino.tar.zst | tar -C $W -xf -
export ORT_DYLIB_PATH=$W/onnxruntime-openvino/libonnxruntime.so
$PY tools/mirror_volume.py gpu/data/images/Emb11_t501.tif $W/big.tif --dims $D | tee "$OUT"/log.txt
PAIR=$(lscpu -p=CPU,CORE | grep -v '^#' | sort -t, -k2,2n -u | head -2 | cut -d, -f1 | paste -sd,)
S=$(date +%s)
for n in 2 all; do
  [ $n = 2 ] && P="taskset -c $PAIR" || P=""
  [ $n = all ] && [ $(( $(date +%s) - S )) -gt 200 ] && { echo "all-core run skipped (time)" | tee -a "$OUT"/log.txt; break; }
  $PY -c "import resource,subprocess,sys,time; t=time.time(); r=subprocess.run(sys.argv[1:]); w=time.time()-t; print(f'cores=$n maxrss_mb={resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss/1024:.0f} wall_s={w:.1f} Mvoxel/s={eval(\"$D\".replace(\",\",\"*\"))/w/1e6:.3f}'); sys.exit(r.returncode)" $P $W/qcanet segment $W/big.tif -o $W/out$n.tif -q --voxel-size 1.75,0.8,0.8 --blocks auto --timings 2>&1 | tee -a "$OUT"/log.txt
  rm -f $W/out$n.tif
done
