"""Graph fusion: the rewritten graph computes what the original computes, with fewer nodes."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from ocrfleet_worker.model import convert, fuse
from onnx import TensorProto, helper, numpy_helper


def _lcnet_block(pad_last: bool) -> onnx.ModelProto:
    """conv → affine → spelt-out hard-swish → affine → conv, as PP-LCNetV3 exports it."""
    rng = np.random.default_rng(0)

    def const(name, value):
        return numpy_helper.from_array(np.asarray(value, np.float32), name)

    last_kernel = 3 if pad_last else 1
    inits = [
        const("w1", rng.normal(size=(4, 3, 3, 3))), const("b1", rng.normal(size=4)),
        const("s1", [1.7]), const("c1", [0.3]), const("three", [3.0]), const("zero", 0.0), const("six", 6.0),
        const("div6", [6.0]), const("s2", [0.4]), const("c2", [-0.2]),
        const("w2", rng.normal(size=(5, 4, last_kernel, last_kernel))), const("b2", rng.normal(size=5)),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Mul", ["s1", "c"], ["m1"]), helper.make_node("Add", ["m1", "c1"], ["a1"]),
        helper.make_node("Add", ["a1", "three"], ["a3"]), helper.make_node("Clip", ["a3", "zero", "six"], ["cl"]),
        helper.make_node("Mul", ["a1", "cl"], ["mm"]), helper.make_node("Div", ["mm", "div6"], ["hs"]),
        helper.make_node("Mul", ["s2", "hs"], ["m2"]), helper.make_node("Add", ["m2", "c2"], ["a2"]),
        helper.make_node("Conv", ["a2", "w2", "b2"], ["y"], pads=[1, 1, 1, 1] if pad_last else [0, 0, 0, 0]),
    ]
    graph = helper.make_graph(nodes, "block", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 12)])


@pytest.mark.parametrize(("pad_last", "expected"), [
    (False, {"conv_affine": 1, "hardswish": 1, "affine_pointwise_conv": 1}),
    (True, {"conv_affine": 1, "hardswish": 1, "affine_pointwise_conv": 0}),  # a padded conv keeps its affine
])
def test_fused_block_computes_the_same(pad_last, expected):
    original = _lcnet_block(pad_last)
    x = np.random.default_rng(1).normal(size=(1, 3, 8, 8)).astype(np.float32)
    unfused = convert.to_torch(onnx.ModelProto.FromString(original.SerializeToString()))
    fused_model = onnx.ModelProto.FromString(original.SerializeToString())
    assert fuse.fuse(fused_model) == expected
    assert len(fused_model.graph.node) == 10 - 2 - 3 - 2 * expected["affine_pointwise_conv"]
    fused = convert.to_torch(fused_model)
    with torch.inference_mode():
        np.testing.assert_allclose(fused(torch.from_numpy(x)).numpy(), unfused(torch.from_numpy(x)).numpy(),
                                   rtol=1e-5, atol=1e-5)


def test_shared_weights_are_left_alone():
    model = _lcnet_block(False)
    second = helper.make_node("Conv", ["x", "w1", "b1"], ["c_again"], pads=[1, 1, 1, 1])
    model.graph.node.append(second)
    model.graph.output.append(helper.make_tensor_value_info("c_again", TensorProto.FLOAT, None))
    assert fuse.fuse(model)["conv_affine"] == 0
