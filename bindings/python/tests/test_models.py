"""The shipped models: the int8 version must be a quantization of the fp32 model it ships
beside (tools/quantize_int8.py copies the fp32 metadata). A retrained fp32 model with a stale
int8 file fails here, instead of `--precision auto` running the old weights."""
from pathlib import Path

import onnx

MODELS = Path(__file__).resolve().parents[3] / "models"


def test_int8_model_is_a_quantization_of_the_shipped_fp32_model():
    fp32 = {p.key: p.value for p in onnx.load(MODELS / "qcanet-default.onnx").metadata_props}
    int8 = {p.key: p.value for p in onnx.load(MODELS / "qcanet-default-int8.onnx").metadata_props}
    assert int8.get("qcanet.precision") == "int8"
    assert "qcanet.quantization" in int8
    for key, value in fp32.items():
        assert int8.get(key) == value, f"{key}: the int8 model's metadata differs from the fp32 model's"
