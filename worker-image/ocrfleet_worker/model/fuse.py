"""Graph fusion: fewer passes over the feature maps before the networks become PyTorch.

The PP-OCRv4 backbones (PP-LCNetV3) were exported op by op: every convolution is followed by
a "learnable affine" (``Mul`` by a scalar, ``Add`` of a scalar), a hard-swish spelt out as
``Add 3 → Clip 0..6 → Mul x → Div 6``, and often another affine. onnxruntime fuses these when it
loads the graph; onnx2torch turns each into its own PyTorch op, so eight memory-bound passes
follow each convolution and, on a CPU, they took more than half of the recogniser's time.
Three rewrites, each exact up to float rounding:

1. an affine right after a ``Conv`` folds into the convolution: ``s·(W∗x + c) + b`` is a
   convolution with weights ``s·W`` and bias ``s·c + b``;
2. the spelt-out hard-swish becomes one node (``HardSwish`` in the ``ocrfleet`` domain,
   converted to ``torch.nn.Hardswish``);
3. an affine right before a 1x1 ``Conv`` without padding folds into that convolution:
   ``W∗(s·x + b) + c`` has weights ``s·W`` and bias ``c + b·ΣW`` (with padding the border would
   differ, so those stay).

The rewrites run on the ONNX graph after shape inference; :func:`register_converters` teaches
onnx2torch the fused node.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

DOMAIN = "ocrfleet"


class _Graph:
    """Just enough bookkeeping to rewrite a graph: initializers by name, consumers by value."""

    def __init__(self, graph) -> None:
        from onnx import numpy_helper

        self.graph = graph
        self._helper = numpy_helper
        self.initializers = {t.name: t for t in graph.initializer}
        self.outputs = {o.name for o in graph.output}
        self.consumers: dict[str, list] = defaultdict(list)
        for node in graph.node:
            for name in node.input:
                self.consumers[name].append(node)

    def constant(self, name: str) -> np.ndarray | None:
        tensor = self.initializers.get(name)
        return None if tensor is None else self._helper.to_array(tensor)

    def scalar(self, name: str) -> float | None:
        value = self.constant(name)
        return float(value.reshape(-1)[0]) if value is not None and value.size == 1 else None

    def only_consumer(self, value: str, op_type: str):
        users = self.consumers.get(value, [])
        if len(users) == 1 and users[0].op_type == op_type and value not in self.outputs:
            return users[0]
        return None

    def set_constant(self, name: str, array: np.ndarray) -> None:
        tensor = self._helper.from_array(array.astype(np.float32), name)
        if name in self.initializers:
            self.initializers[name].CopyFrom(tensor)
        else:
            self.graph.initializer.append(tensor)
            self.initializers[name] = self.graph.initializer[-1]

    def exclusive(self, *names: str) -> bool:
        """Whether each named initializer feeds exactly one node (so it may be rewritten)."""
        return all(not n or len(self.consumers.get(n, [])) == 1 for n in names)

    def scalar_operand(self, node) -> tuple[str, float] | None:
        """For a binary Mul/Add with one scalar constant: (the other input, the scalar)."""
        if len(node.input) != 2:
            return None
        a, b = node.input
        if (s := self.scalar(b)) is not None and self.constant(a) is None:
            return a, s
        if (s := self.scalar(a)) is not None and self.constant(b) is None:
            return b, s
        return None

    def affine_after(self, value: str) -> tuple[object, object, float, float] | None:
        """``Mul(value, s) → Add(·, b)`` consuming ``value`` alone: (mul, add, s, b)."""
        mul = self.only_consumer(value, "Mul")
        if mul is None or (scaled := self.scalar_operand(mul)) is None or scaled[0] != value:
            return None
        add = self.only_consumer(mul.output[0], "Add")
        if add is None or (shifted := self.scalar_operand(add)) is None or shifted[0] != mul.output[0]:
            return None
        return mul, add, scaled[1], shifted[1]


def fuse(model) -> dict[str, int]:
    """Apply the three rewrites in place; returns how often each applied."""
    counts = {"conv_affine": _fold_affine_into_conv(model.graph), "hardswish": _fuse_hardswish(model.graph)}
    counts["affine_pointwise_conv"] = _fold_affine_into_pointwise_conv(model.graph)
    if counts["hardswish"] and not any(o.domain == DOMAIN for o in model.opset_import):
        from onnx import helper

        model.opset_import.append(helper.make_opsetid(DOMAIN, 1))
    return counts


def _remove(graph, doomed: list) -> None:
    ids = {id(n) for n in doomed}
    kept = [n for n in graph.node if id(n) not in ids]
    del graph.node[:]
    graph.node.extend(kept)


def _fold_affine_into_conv(graph) -> int:
    g = _Graph(graph)
    doomed = []
    for conv in list(graph.node):
        if conv.op_type != "Conv" or (weight := g.constant(conv.input[1])) is None or not g.exclusive(*conv.input[1:]):
            continue
        found = g.affine_after(conv.output[0])
        if found is None:
            continue
        mul, add, s, b = found
        bias = g.constant(conv.input[2]) if len(conv.input) > 2 and conv.input[2] else np.zeros(weight.shape[0], np.float32)
        g.set_constant(conv.input[1], weight * s)
        bias_name = conv.input[2] if len(conv.input) > 2 and conv.input[2] else f"{conv.name or conv.output[0]}.ocrfleet_bias"
        g.set_constant(bias_name, bias * s + b)
        if len(conv.input) > 2:
            conv.input[2] = bias_name
        else:
            conv.input.append(bias_name)
        conv.output[0] = add.output[0]
        doomed += [mul, add]
    _remove(graph, doomed)
    return len(doomed) // 2


def _fuse_hardswish(graph) -> int:
    from onnx import helper

    g = _Graph(graph)
    doomed, fused = [], []
    for add in list(graph.node):
        if add.op_type != "Add" or (operand := g.scalar_operand(add)) is None or operand[1] != 3.0:
            continue
        x = operand[0]
        clip = g.only_consumer(add.output[0], "Clip")
        if clip is None or len(clip.input) < 3 or (g.scalar(clip.input[1]), g.scalar(clip.input[2])) != (0.0, 6.0):
            continue
        mul = g.only_consumer(clip.output[0], "Mul")
        if mul is None or sorted(mul.input) != sorted([x, clip.output[0]]):
            continue
        div = g.only_consumer(mul.output[0], "Div")
        if div is None or div.input[0] != mul.output[0] or g.scalar(div.input[1]) != 6.0:
            continue
        doomed += [add, clip, mul, div]
        fused.append((div, helper.make_node("HardSwish", [x], [div.output[0]], domain=DOMAIN,
                                            name=f"{div.output[0]}_hardswish".replace(".", "_"))))
    replacement = {id(old): new for old, new in fused}
    kept = []
    for node in graph.node:
        if id(node) in replacement:
            kept.append(replacement[id(node)])
        elif id(node) not in {id(n) for n in doomed}:
            kept.append(node)
    del graph.node[:]
    graph.node.extend(kept)
    return len(fused)


def _fold_affine_into_pointwise_conv(graph) -> int:
    from onnx import helper

    g = _Graph(graph)
    doomed = []
    for node in list(graph.node):
        found = g.affine_after(node.output[0]) if node.output else None
        if found is None:
            continue
        mul, add, s, b = found
        conv = g.only_consumer(add.output[0], "Conv")
        if conv is None or conv.input[0] != add.output[0] or (weight := g.constant(conv.input[1])) is None:
            continue
        if not g.exclusive(*conv.input[1:]):
            continue
        attributes = {a.name: helper.get_attribute_value(a) for a in conv.attribute}
        if weight.shape[2:] != (1, 1) or any(attributes.get("pads", [0])) or attributes.get("group", 1) != 1:
            continue
        bias = g.constant(conv.input[2]) if len(conv.input) > 2 and conv.input[2] else np.zeros(weight.shape[0], np.float32)
        g.set_constant(conv.input[1], weight * s)
        bias_name = conv.input[2] if len(conv.input) > 2 and conv.input[2] else f"{conv.output[0]}.ocrfleet_bias"
        g.set_constant(bias_name, bias + b * weight.sum(axis=(1, 2, 3)))
        if len(conv.input) > 2:
            conv.input[2] = bias_name
        else:
            conv.input.append(bias_name)
        conv.input[0] = node.output[0]
        doomed += [mul, add]
    _remove(graph, doomed)
    return len(doomed) // 2


_registered = False


def register_converters() -> None:
    """Teach onnx2torch the fused node (once per process)."""
    global _registered
    if _registered:
        return
    from onnx2torch.node_converters.registry import add_converter
    from onnx2torch.utils.common import OperationConverterResult, onnx_mapping_from_node
    from torch import nn

    @add_converter(operation_type="HardSwish", version=1, domain=DOMAIN)
    def _(node, graph):  # noqa: ARG001 - the converter signature onnx2torch calls
        return OperationConverterResult(torch_module=nn.Hardswish(), onnx_mapping=onnx_mapping_from_node(node))

    _registered = True
