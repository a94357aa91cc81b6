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

PP-OCRv6 (PP-HGNetV2-style backbones, SVTR neck) was exported by a newer paddle2onnx, with its
own spellings, rewritten the same way:

4. ``Identity`` nodes (one after nearly every op) go: their consumers read the input;
5. a bias-less ``Conv`` followed by the ``Add`` of a per-channel constant takes it as its bias;
6. GELU spelt out as ``Div √2 → Erf → Add 1 → Mul x → Mul 0.5`` becomes one node (``Gelu``,
   converted to ``torch.nn.GELU``: one vectorised pass instead of five);
7. layer normalisation spelt out over the last axis (``ReduceMean → Sub → Pow 2 → ReduceMean →
   Add ε → Sqrt → Div → Mul γ → Add β``) becomes one node (``LayerNorm``, converted to
   ``torch.nn.functional.layer_norm``);
8. a stride-1 ``MaxPool`` (the v6 stems' 2x2) becomes the maximum of its k² shifted views of the
   padded map (``MaxPoolShifted``): PyTorch's CPU ``max_pool2d`` at stride 1 took about 30x as long.

The rewrites run on the ONNX graph after shape inference; :func:`register_converters` teaches
onnx2torch the fused nodes.
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
    """Apply the rewrites in place; returns how often each applied."""
    graph = model.graph
    counts = {"identity": _drop_identities(graph), "conv_bias": _fold_bias_into_conv(graph),
              "conv_affine": _fold_affine_into_conv(graph), "hardswish": _fuse_hardswish(graph),
              "gelu": _fuse_gelu(graph),
              "layernorm": _fuse_layernorm(graph), "maxpool_shifted": _shifted_maxpool(graph)}
    counts["affine_pointwise_conv"] = _fold_affine_into_pointwise_conv(graph)
    fused = counts["hardswish"] + counts["gelu"] + counts["layernorm"] + counts["maxpool_shifted"]
    if fused and not any(o.domain == DOMAIN for o in model.opset_import):
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


def _replace(graph, doomed: list, fused: list) -> None:
    """Drop ``doomed`` nodes; each ``(old, new)`` in ``fused`` puts ``new`` where ``old`` was."""
    replacement = {id(old): new for old, new in fused}
    gone = {id(n) for n in doomed}
    kept = [replacement.get(id(node), node) for node in graph.node if id(node) in replacement or id(node) not in gone]
    del graph.node[:]
    graph.node.extend(kept)


def _fused_node(op_type: str, inputs: list[str], last, **attributes):
    from onnx import helper

    return helper.make_node(op_type, inputs, [last.output[0]], domain=DOMAIN,
                            name=f"{last.output[0]}_{op_type.lower()}".replace(".", "_"), **attributes)


def _drop_identities(graph) -> int:
    outputs = {o.name for o in graph.output}
    renamed: dict[str, str] = {}
    doomed = []
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name in renamed:
                node.input[i] = renamed[name]
        if node.op_type == "Identity" and node.output[0] not in outputs:
            renamed[node.output[0]] = node.input[0]
            doomed.append(node)
    _remove(graph, doomed)
    return len(doomed)


def _fold_bias_into_conv(graph) -> int:
    g = _Graph(graph)
    doomed = []
    for conv in list(graph.node):
        if conv.op_type != "Conv" or len(conv.input) > 2 and conv.input[2] or (weight := g.constant(conv.input[1])) is None:
            continue
        add = g.only_consumer(conv.output[0], "Add")
        if add is None or len(add.input) != 2:
            continue
        other = add.input[1] if add.input[0] == conv.output[0] else add.input[0]
        bias = g.constant(other)
        if bias is None or bias.size != weight.shape[0] or bias.shape[-2:] not in ((1, 1), (weight.shape[0], 1)):
            continue
        name = f"{conv.output[0]}.ocrfleet_bias"
        g.set_constant(name, bias.reshape(-1))
        if len(conv.input) == 2:
            conv.input.append(name)
        else:
            conv.input[2] = name
        conv.output[0] = add.output[0]
        doomed.append(add)
    _remove(graph, doomed)
    return len(doomed)


def _fuse_gelu(graph) -> int:
    g = _Graph(graph)
    doomed, fused = [], []
    for div in list(graph.node):
        if div.op_type != "Div" or abs((g.scalar(div.input[1]) or 0) - 2 ** 0.5) > 1e-6:
            continue
        x = div.input[0]
        erf = g.only_consumer(div.output[0], "Erf")
        add = erf and g.only_consumer(erf.output[0], "Add")
        if add is None or (operand := g.scalar_operand(add)) is None or operand != (erf.output[0], 1.0):
            continue
        mul = g.only_consumer(add.output[0], "Mul")
        if mul is None or sorted(mul.input) != sorted([x, add.output[0]]):
            continue
        half = g.only_consumer(mul.output[0], "Mul")
        if half is None or g.scalar_operand(half) != (mul.output[0], 0.5):
            continue
        doomed += [div, erf, add, mul, half]
        fused.append((half, _fused_node("Gelu", [x], half)))
    _replace(graph, doomed, fused)
    return len(fused)


def _fuse_layernorm(graph) -> int:
    from onnx import helper

    g = _Graph(graph)
    doomed, fused = [], []

    def last_axis(node) -> bool:
        attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        return attributes.get("axes") == [-1] and attributes.get("keepdims", 1) == 1

    for mean in list(graph.node):
        if mean.op_type != "ReduceMean" or not last_axis(mean):
            continue
        x = mean.input[0]
        sub = g.only_consumer(mean.output[0], "Sub")
        if sub is None or list(sub.input) != [x, mean.output[0]]:
            continue
        users = {n.op_type: n for n in g.consumers.get(sub.output[0], [])}
        pow_, div = users.get("Pow"), users.get("Div")
        if len(users) != 2 or pow_ is None or div is None or g.scalar(pow_.input[1]) != 2.0:
            continue
        var = g.only_consumer(pow_.output[0], "ReduceMean")
        if var is None or not last_axis(var):
            continue
        eps_add = g.only_consumer(var.output[0], "Add")
        if eps_add is None or (eps := g.scalar_operand(eps_add)) is None or eps[0] != var.output[0]:
            continue
        sqrt = g.only_consumer(eps_add.output[0], "Sqrt")
        if sqrt is None or list(div.input) != [sub.output[0], sqrt.output[0]]:
            continue
        scale = g.only_consumer(div.output[0], "Mul")
        shift = scale and g.only_consumer(scale.output[0], "Add")
        if shift is None:
            continue
        gamma = next((i for i in scale.input if i != div.output[0]), None)
        beta = next((i for i in shift.input if i != scale.output[0]), None)
        if g.constant(gamma) is None or g.constant(beta) is None or g.constant(gamma).ndim != 1 and \
                g.constant(gamma).squeeze().ndim != 1:
            continue
        g.set_constant(gamma, g.constant(gamma).reshape(-1))
        g.set_constant(beta, g.constant(beta).reshape(-1))
        doomed += [mean, sub, pow_, var, eps_add, sqrt, div, scale, shift]
        fused.append((shift, _fused_node("LayerNorm", [x, gamma, beta], shift, epsilon=float(eps[1]))))
    _replace(graph, doomed, fused)
    return len(fused)


def _shifted_maxpool(graph) -> int:
    from onnx import helper

    fused = []
    for pool in list(graph.node):
        if pool.op_type != "MaxPool" or len(pool.output) != 1:
            continue
        attributes = {a.name: helper.get_attribute_value(a) for a in pool.attribute}
        kernel = attributes.get("kernel_shape", [])
        if (len(kernel) != 2 or any(s != 1 for s in attributes.get("strides", [1, 1]))
                or any(d != 1 for d in attributes.get("dilations", [1, 1]))
                or attributes.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET")):
            continue
        fused.append((pool, _fused_node("MaxPoolShifted", [pool.input[0]], pool, kernel_shape=kernel,
                                        pads=attributes.get("pads", [0, 0, 0, 0]))))
    _replace(graph, [], fused)
    return len(fused)


def _fuse_hardswish(graph) -> int:
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
        fused.append((div, _fused_node("HardSwish", [x], div)))
    _replace(graph, doomed, fused)
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
    import torch
    from onnx2torch.node_converters.registry import add_converter
    from onnx2torch.utils.common import OperationConverterResult, onnx_mapping_from_node
    from torch import Tensor, nn

    class LayerNorm(nn.Module):
        """``layer_norm`` over the last axis with the graph's own γ and β (its second and third inputs)."""

        def __init__(self, epsilon: float) -> None:
            super().__init__()
            self.epsilon = epsilon

        def forward(self, x: Tensor, gamma: Tensor, beta: Tensor) -> Tensor:
            return nn.functional.layer_norm(x, x.shape[-1:], gamma, beta, self.epsilon)

    class MaxPoolShifted(nn.Module):
        """Stride-1 max pooling as the maximum of the kernel's shifted views of the -inf-padded map."""

        def __init__(self, kernel: list[int], pads: list[int]) -> None:
            super().__init__()
            self.kernel = (int(kernel[0]), int(kernel[1]))
            top, left, bottom, right = (int(p) for p in pads)
            self.padding = (left, right, top, bottom)

        def forward(self, x: Tensor) -> Tensor:
            x = nn.functional.pad(x, self.padding, value=float("-inf"))
            kh, kw = self.kernel
            h, w = x.shape[-2] - kh + 1, x.shape[-1] - kw + 1
            out = x[..., :h, :w]
            for i in range(kh):
                for j in range(kw):
                    if i or j:
                        out = torch.maximum(out, x[..., i:i + h, j:j + w])
            return out

    @add_converter(operation_type="HardSwish", version=1, domain=DOMAIN)
    def _(node, graph):  # noqa: ARG001 - the converter signature onnx2torch calls
        return OperationConverterResult(torch_module=nn.Hardswish(), onnx_mapping=onnx_mapping_from_node(node))

    @add_converter(operation_type="Gelu", version=1, domain=DOMAIN)
    def _(node, graph):  # noqa: ARG001
        return OperationConverterResult(torch_module=nn.GELU(), onnx_mapping=onnx_mapping_from_node(node))

    @add_converter(operation_type="MaxPoolShifted", version=1, domain=DOMAIN)
    def _(node, graph):  # noqa: ARG001
        return OperationConverterResult(torch_module=MaxPoolShifted(node.attributes["kernel_shape"],
                                                                    node.attributes["pads"]),
                                        onnx_mapping=onnx_mapping_from_node(node))

    @add_converter(operation_type="LayerNorm", version=1, domain=DOMAIN)
    def _(node, graph):  # noqa: ARG001
        return OperationConverterResult(torch_module=LayerNorm(node.attributes.get("epsilon", 1e-5)),
                                        onnx_mapping=onnx_mapping_from_node(node))

    _registered = True

