"""Checkpoint -> ONNX with the library's metadata contract, and a parity check."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from . import model as M


def _meta(ck, role):
    post = ck.get("post", {})
    vs = ck.get("voxel_size", [1.75, 0.8, 0.8])
    net_cfg = ck["config"]
    mult = [1, 1, 1]
    for p in net_cfg["pools"]:
        mult = [a * b for a, b in zip(mult, p)]
    meta = {
        "qcanet.role": role,
        "qcanet.format": "1",
        "qcanet.voxel_size": ",".join(f"{v:g}" for v in vs),
        "qcanet.normalization": ck.get("normalization", "percentile:1,99.9"),
        "qcanet.spatial_multiple": ",".join(str(m) for m in mult),
        "qcanet.tile": "80,256,256",
        "qcanet.overlap": "16,64,64",
        "qcanet.markers": post.get("markers", "local-max"),
        "qcanet.fg_threshold": f"{post.get('fg_threshold', 0.5):g}",
        "qcanet.centre_threshold": f"{post.get('centre_threshold', 0.5):g}",
        "qcanet.marker_sigma_um": f"{post.get('sigma_um', 1.0):g}",
        "qcanet.landscape": post.get("landscape", "distance"),
        "qcanet.min_volume_um3": f"{post.get('min_volume_um3', 0.0):g}",
        "qcanet.architecture": json.dumps(net_cfg),
        "qcanet.parameters": str(sum(v.numel() for v in ck["model"].values() if v.dtype.is_floating_point)),
    }
    if "val" in ck:
        meta["qcanet.validation"] = json.dumps(ck["val"])
    return meta


class _Head(torch.nn.Module):
    def __init__(self, net, ch):
        super().__init__()
        self.net, self.ch = net, ch

    def forward(self, image):
        return torch.sigmoid(self.net(image)[:, self.ch:self.ch + 1])


def export(checkpoint, out, split=False, opset=17, check=True, post=None):
    """Write ``out`` (joint model: outputs prob + centre) or, with ``split``,
    ``out``-nsn.onnx and ``out``-ndn.onnx.  ``post`` overrides the checkpoint's
    post-processing defaults.  Returns {path: max_abs_diff}."""
    import onnx
    ck = torch.load(checkpoint, map_location="cpu", weights_only=False)
    if post:
        ck["post"] = dict(ck.get("post", {}), **post)
    net = M.build(ck["config"])
    net.load_state_dict(ck["model"])
    net.eval()
    out = Path(out)
    jobs = []
    if split:
        stem = out.with_suffix("")
        jobs.append((Path(f"{stem}-nsn.onnx"), _Head(net, 0), ["prob"], "nsn"))
        jobs.append((Path(f"{stem}-ndn.onnx"), _Head(net, 1), ["prob"], "ndn"))
    else:
        jobs.append((out, M.ExportWrapper(net), ["prob", "centre"], "joint"))
    mult = net.spatial_multiple
    x = torch.rand(1, 1, 2 * mult[0], 3 * mult[1], 2 * mult[2])
    results = {}
    for path, mod, outs, role in jobs:
        mod.eval()  # the exporter restores the module's mode afterwards: it must be eval going in
        axes = {"image": {0: "n", 2: "d", 3: "h", 4: "w"}}
        axes.update({o: {0: "n", 2: "d", 3: "h", 4: "w"} for o in outs})
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".onnx.tmp")
        kw = dict(input_names=["image"], output_names=outs, dynamic_axes=axes, opset_version=opset)
        try:
            torch.onnx.export(mod, (x,), str(tmp), dynamo=False, **kw)
        except TypeError:  # older torch without the dynamo switch
            torch.onnx.export(mod, (x,), str(tmp), **kw)
        m = onnx.load(str(tmp))
        del m.metadata_props[:]
        for k, v in _meta(ck, role).items():
            p = m.metadata_props.add(); p.key = k; p.value = v
        m.producer_name = "qcanet-train"
        onnx.checker.check_model(m)
        onnx.save(m, str(tmp))
        tmp.replace(path)
        diff = float("nan")
        if check:
            diff = parity(path, mod, mult)
        results[str(path)] = diff
        print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB), ONNX Runtime vs PyTorch max |diff| = {diff:.2e}")
    return results


def parity(path, mod, mult, seed=0):
    import onnxruntime as ort
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(1, 1, 3 * mult[0], 5 * mult[1], 4 * mult[2], generator=g)
    mod.eval()
    with torch.no_grad():
        ref = mod(x)
    ref = ref if isinstance(ref, tuple) else (ref,)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"image": x.numpy()})
    return float(max(np.abs(a - b.numpy()).max() for a, b in zip(got, ref)))
