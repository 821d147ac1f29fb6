"""Static int8 (QDQ) quantization of a qcanet ONNX model, calibrated on training volumes.

Weights are quantized per output channel (int8), activations per tensor (uint8, asymmetric),
from the activation ranges the model shows on `--patches` patches of normalised training
volumes (every embryo in `--data`, all time points, so every stage from 2 to ~60 nuclei is
seen). The qcanet metadata of the fp32 model is kept, with `qcanet.precision=int8` and the
calibration recorded.

    python tools/quantize_int8.py models/qcanet-default.onnx out-int8.onnx \
        --data ../shared/data/bbbc050/train --exclude Emb10,Emb11 --method percentile
"""
import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
import onnx
import tifffile
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bindings" / "python"))
from qcanet.train.data import normalise  # noqa: E402  (the library's normalisation)

PATCH = (32, 96, 96)


class Patches(CalibrationDataReader):
    def __init__(self, files, n, seed, input_name):
        rng = np.random.default_rng(seed)
        self.items = []
        per_file = max(1, n // len(files))
        for f in files:
            v = normalise(tifffile.imread(f))
            for _ in range(per_file):
                z0, y0, x0 = (int(rng.integers(0, max(1, s - p + 1))) for s, p in zip(v.shape, PATCH))
                p = v[z0:z0 + PATCH[0], y0:y0 + PATCH[1], x0:x0 + PATCH[2]]
                pad = [(0, t - s) for s, t in zip(p.shape, PATCH)]
                self.items.append({input_name: np.pad(p, pad)[None, None].astype(np.float32)})
        self.items = self.items[:n] if len(self.items) > n else self.items
        self.it = iter(self.items)

    def get_next(self):
        return next(self.it, None)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("fp32")
    ap.add_argument("out")
    ap.add_argument("--data", required=True, help="folder with images/ (BBBC050 layout)")
    ap.add_argument("--exclude", default="", help="embryos left out (validation), e.g. Emb10,Emb11")
    ap.add_argument("--patches", type=int, default=48)
    ap.add_argument("--method", choices=["minmax", "percentile", "entropy"], default="percentile")
    ap.add_argument("--keep-fp32", default="", help="comma-separated node names left in fp32")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    if Path(a.out).resolve() == Path(a.fp32).resolve():
        sys.exit("the output would replace the fp32 model: name another file")
    excluded = [e for e in a.exclude.split(",") if e]
    files = sorted(f for f in (Path(a.data) / "images").glob("*.tif") if not any(f.name.startswith(e) for e in excluded))
    if not files:
        sys.exit(f"no calibration volumes in {Path(a.data) / 'images'} (after excluding {excluded})")
    model = onnx.load(a.fp32)
    input_name = model.graph.input[0].name
    out = Path(a.out)
    pre, part = out.with_suffix(".pre.onnx"), out.with_suffix(".part.onnx")
    try:
        quant_pre_process(a.fp32, str(pre), skip_symbolic_shape=True)  # dynamic z, y, x
        method = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
                  "entropy": CalibrationMethod.Entropy}[a.method]
        reader = Patches(files, a.patches, a.seed, input_name)
        quantize_static(str(pre), str(part), reader, quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, calibrate_method=method,
                        nodes_to_exclude=[n for n in a.keep_fp32.split(",") if n],
                        extra_options={"CalibPercentile": 99.999} if a.method == "percentile" else {})
        q = onnx.load(str(part))
    finally:
        pre.unlink(missing_ok=True)
        part.unlink(missing_ok=True)
    del q.metadata_props[:]
    for p in model.metadata_props:
        q.metadata_props.add(key=p.key, value=p.value)
    calib = {"method": a.method, "patches": len(reader.items), "patch": PATCH, "volumes": len(files),
             "excluded": excluded, "activations": "uint8 per tensor", "weights": "int8 per channel",
             "fp32_nodes": [n for n in a.keep_fp32.split(",") if n]}
    q.metadata_props.add(key="qcanet.precision", value="int8")
    q.metadata_props.add(key="qcanet.quantization", value=json.dumps(calib))
    onnx.save(q, str(part))
    os.replace(part, out)  # all or nothing
    print(f"{a.out}: {Path(a.out).stat().st_size / 1e6:.2f} MB, calibrated on {len(reader.items)} patches of {len(files)} volumes ({a.method})")


if __name__ == "__main__":
    main()
