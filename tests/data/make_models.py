"""Writes the small ONNX fixtures the Rust tests use (run: python make_models.py).

- rank4.onnx           input [N,1,H,W]: wrong rank, must be refused at load time
- three_channels.onnx  output with 3 channels: must be refused
- int_input.onnx       int64 input: must be refused
- threshold_nsn.onnx   a valid NSN: prob = sigmoid(40 (x - 0.3)), C = 1, with metadata
- threshold_ndn.onnx   a valid NDN with a softmax pair (C = 2): centre = sigmoid(40 (x - 0.8))
"""
import onnx
from onnx import TensorProto, helper

DYN5 = ["n", 1, "d", "h", "w"]


def save(graph, name, meta=None):
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="qcanet-tests")
    m.ir_version = 8
    for k, v in (meta or {}).items():
        p = m.metadata_props.add(); p.key = k; p.value = v
    onnx.checker.check_model(m)
    onnx.save(m, name)


def const(name, v):
    return helper.make_node("Constant", [], [name], value=helper.make_tensor(name + "_t", TensorProto.FLOAT, [], [v]))


x5 = helper.make_tensor_value_info("image", TensorProto.FLOAT, DYN5)
save(helper.make_graph([helper.make_node("Identity", ["image"], ["prob"])], "rank4",
                       [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["n", 1, "h", "w"])],
                       [helper.make_tensor_value_info("prob", TensorProto.FLOAT, ["n", 1, "h", "w"])]), "rank4.onnx")
save(helper.make_graph([helper.make_node("Concat", ["image", "image", "image"], ["prob"], axis=1)], "three", [x5],
                       [helper.make_tensor_value_info("prob", TensorProto.FLOAT, ["n", 3, "d", "h", "w"])]),
     "three_channels.onnx")
save(helper.make_graph([helper.make_node("Cast", ["image"], ["prob"], to=TensorProto.FLOAT)], "int",
                       [helper.make_tensor_value_info("image", TensorProto.INT64, DYN5)],
                       [helper.make_tensor_value_info("prob", TensorProto.FLOAT, DYN5)]), "int_input.onnx")

meta = {"qcanet.role": "nsn", "qcanet.voxel_size": "1,1,1", "qcanet.spatial_multiple": "1,1,1",
        "qcanet.tile": "16,32,32", "qcanet.overlap": "4,8,8", "qcanet.normalization": "none",
        "qcanet.markers": "components"}
nodes = [const("c", 0.3), const("k", 40.0), helper.make_node("Sub", ["image", "c"], ["a"]),
         helper.make_node("Mul", ["a", "k"], ["b"]), helper.make_node("Sigmoid", ["b"], ["prob"])]
save(helper.make_graph(nodes, "nsn", [x5], [helper.make_tensor_value_info("prob", TensorProto.FLOAT, DYN5)]),
     "threshold_nsn.onnx", meta)
nodes = [const("c", 0.8), const("k", 40.0), const("one", 1.0), helper.make_node("Sub", ["image", "c"], ["a"]),
         helper.make_node("Mul", ["a", "k"], ["b"]), helper.make_node("Sigmoid", ["b"], ["p"]),
         helper.make_node("Sub", ["one", "p"], ["q"]), helper.make_node("Concat", ["q", "p"], ["prob"], axis=1)]
save(helper.make_graph(nodes, "ndn", [x5],
                       [helper.make_tensor_value_info("prob", TensorProto.FLOAT, ["n", 2, "d", "h", "w"])]),
     "threshold_ndn.onnx", dict(meta, **{"qcanet.role": "ndn"}))
