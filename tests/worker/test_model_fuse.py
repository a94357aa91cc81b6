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
    counts = fuse.fuse(fused_model)
    assert {k: counts[k] for k in expected} == expected
    assert sum(counts.values()) == sum(expected.values())
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


def _hgnet_block() -> onnx.ModelProto:
    """PP-OCRv6's spellings, as paddle2onnx exports them: Identity after each op, a bias-less conv
    with an Add of a (1, C, 1, 1) bias, a SAME_UPPER 2x2 stride-1 stem (conv and max pool), GELU
    and layer normalisation spelt out op by op."""
    rng = np.random.default_rng(2)

    def const(name, value):
        return numpy_helper.from_array(np.asarray(value, np.float32), name)

    inits = [
        const("w_stem", rng.normal(size=(4, 3, 2, 2))), const("w1", rng.normal(size=(6, 4, 1, 1))),
        const("bias1", rng.normal(size=(1, 6, 1, 1))), const("sqrt2", [2 ** 0.5]), const("one", [1.0]),
        const("half", [0.5]), const("two", [2.0]), const("eps", [1e-6]),
        const("gamma", rng.normal(size=(9,))), const("beta", rng.normal(size=(9,))),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w_stem"], ["stem"], auto_pad="SAME_UPPER", kernel_shape=[2, 2]),
        helper.make_node("MaxPool", ["stem"], ["pooled"], auto_pad="SAME_UPPER", kernel_shape=[2, 2], strides=[1, 1]),
        helper.make_node("Identity", ["pooled"], ["p_id"]),
        helper.make_node("Conv", ["p_id", "w1"], ["c1"]), helper.make_node("Add", ["c1", "bias1"], ["c1b"]),
        helper.make_node("Identity", ["c1b"], ["g_in"]),
        helper.make_node("Div", ["g_in", "sqrt2"], ["d"]), helper.make_node("Erf", ["d"], ["e"]),
        helper.make_node("Add", ["e", "one"], ["e1"]), helper.make_node("Mul", ["g_in", "e1"], ["gm"]),
        helper.make_node("Mul", ["gm", "half"], ["gelu"]),
        helper.make_node("ReduceMean", ["gelu"], ["mean"], axes=[-1]),
        helper.make_node("Sub", ["gelu", "mean"], ["centred"]), helper.make_node("Pow", ["centred", "two"], ["sq"]),
        helper.make_node("ReduceMean", ["sq"], ["var"], axes=[-1]), helper.make_node("Add", ["var", "eps"], ["ve"]),
        helper.make_node("Sqrt", ["ve"], ["sd"]), helper.make_node("Div", ["centred", "sd"], ["normed"]),
        helper.make_node("Mul", ["normed", "gamma"], ["scaled"]), helper.make_node("Add", ["scaled", "beta"], ["y"]),
    ]
    graph = helper.make_graph(nodes, "block", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 7, 9])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)])


def test_v6_spellings_fuse_and_convert_to_what_onnxruntime_computes():
    import onnxruntime

    original = _hgnet_block()
    x = np.random.default_rng(3).normal(size=(2, 3, 7, 9)).astype(np.float32)
    session = onnxruntime.InferenceSession(original.SerializeToString(), providers=["CPUExecutionProvider"])
    expected = session.run(None, {"x": x})[0]
    model = onnx.ModelProto.FromString(original.SerializeToString())
    assert convert._explicit_same_padding(model.graph) == 2
    counts = fuse.fuse(model)
    assert {k: v for k, v in counts.items() if v} == {"identity": 2, "conv_bias": 1, "gelu": 1, "layernorm": 1,
                                                       "maxpool_shifted": 1}
    assert [n.op_type for n in model.graph.node] == ["Conv", "MaxPoolShifted", "Conv", "Gelu", "LayerNorm"]
    module = convert.to_torch(model)
    with torch.inference_mode():
        np.testing.assert_allclose(module(torch.from_numpy(x)).numpy(), expected, rtol=1e-3, atol=5e-4)


def test_same_padding_at_a_stride_other_than_one_is_refused_with_the_node_named():
    model = _hgnet_block()
    model.graph.node[0].attribute.append(helper.make_attribute("strides", [2, 2]))
    with pytest.raises(ValueError, match="Conv.*SAME_UPPER.*stride"):
        convert._explicit_same_padding(model.graph)
