"""Exact receptive fields of every layer of a PyTorch network, from its module graph.

The network is traced with :mod:`torch.fx` and each node's receptive field is derived from the
one before it: convolutions and pools compose their kernel, stride, padding and dilation; explicit
padding shifts the field; element-wise operations (activations, normalisation, residual sums,
channel concatenation) take the union of their inputs' fields, which is the exact bounding box of
every path through a residual or Inception block; global pooling and flattening make a unit see the
whole image.

A unit at feature position ``i`` along an axis sees the input pixels
``[start + i * stride, start + i * stride + size)``. ``start`` is negative when the field begins in
the padding, and the end may lie past the image edge.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import fx, nn

from ..errors import VisageError


@dataclass(frozen=True)
class AxisField:
    """The receptive field along one axis: ``size`` pixels, ``stride`` apart, unit 0 at ``start``."""

    size: int = 1
    stride: int = 1
    start: int = 0

    def span(self, index: int) -> tuple[int, int]:
        """The half-open input interval ``[lo, hi)`` seen by the unit at ``index``."""
        lo = self.start + index * self.stride
        return lo, lo + self.size

    def through(self, kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1) -> AxisField:
        """The field after a sliding window with this geometry is applied to features with this field."""
        return AxisField(
            size=self.size + dilation * (kernel - 1) * self.stride,
            stride=self.stride * stride,
            start=self.start - padding * self.stride,
        )

    def union(self, other: AxisField) -> AxisField:
        """The smallest field holding both, for two paths that meet at the same feature grid."""
        if self.stride != other.stride:
            raise ValueError(f"paths with strides {self.stride} and {other.stride} meet; their units do not align")
        lo = min(self.start, other.start)
        hi = max(self.start + self.size, other.start + other.size)
        return AxisField(hi - lo, self.stride, lo)


@dataclass(frozen=True)
class ReceptiveField:
    """Where a layer's units look in the input image; ``whole_image`` for units after global pooling."""

    y: AxisField = AxisField()
    x: AxisField = AxisField()
    whole_image: bool = False

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) of the field in input pixels."""
        return self.y.size, self.x.size

    @property
    def stride(self) -> tuple[int, int]:
        return self.y.stride, self.x.stride

    def box(self, i: int, j: int) -> tuple[int, int, int, int]:
        """Input box ``(top, left, bottom, right)``, half-open, seen by the unit at feature row i, column j."""
        if self.whole_image:
            raise ValueError("a whole-image receptive field has no box; crop the whole image")
        top, bottom = self.y.span(i)
        left, right = self.x.span(j)
        return top, left, bottom, right

    def through(self, kernel, stride=1, padding=0, dilation=1) -> ReceptiveField:
        if self.whole_image:
            return self
        k, s, p, d = (_pair(v) for v in (kernel, stride, padding, dilation))
        return ReceptiveField(self.y.through(k[0], s[0], p[0], d[0]), self.x.through(k[1], s[1], p[1], d[1]))

    def shifted(self, top: int, left: int) -> ReceptiveField:
        """The field after ``top``/``left`` pixels of padding are added before the features."""
        if self.whole_image:
            return self
        return ReceptiveField(self.y.through(1, 1, top), self.x.through(1, 1, left))

    def union(self, other: ReceptiveField) -> ReceptiveField:
        if self.whole_image or other.whole_image:
            return WHOLE_IMAGE
        return ReceptiveField(self.y.union(other.y), self.x.union(other.x))

    def fits(self, image_size: tuple[int, int]) -> bool:
        """Does the field fit inside an image of ``image_size`` (height, width)? Not for a whole-image field."""
        return not self.whole_image and self.y.size <= image_size[0] and self.x.size <= image_size[1]

    def describe(self) -> str:
        """A one-line description, e.g. ``40×40 px, stride 4×4, start (-18, -18)``."""
        if self.whole_image:
            return "whole image"
        return (f"{self.y.size}×{self.x.size} px, stride {self.y.stride}×{self.x.stride}, "
                f"start ({self.y.start}, {self.x.start})")


#: The field of an input pixel.
PIXEL = ReceptiveField()
#: The field of a unit that sees the whole image (after global pooling or a fully connected layer).
WHOLE_IMAGE = ReceptiveField(whole_image=True)


@dataclass(frozen=True)
class LayerInfo:
    """One addressable layer: its name, output shape for the probe input, and receptive field.

    ``field`` is None when it cannot be derived; ``reason`` then says which operation is in the way.
    ``exact`` is False after branches with different fields are concatenated along channels (as in
    Inception blocks) and before a convolution mixes them again: ``field`` is then the union, exact
    for the widest branch's units and a bound for the others. ``reach`` is (rows, columns) of the
    image of the analysed size that reach the layer at all: strided layers whose windows do not fit
    drop the last few rows and columns, which no unit sees even when its box covers them.
    """

    name: str
    kind: str
    shape: tuple[int, ...]
    field: ReceptiveField | None
    reason: str = ""
    exact: bool = True
    reach: tuple[int, int] | None = None

    def visible_box(self, i: int, j: int) -> tuple[int, int, int, int]:
        """The part of the image the unit at (i, j) sees: its box cut to the image rows and columns
        that reach this layer, ``(top, left, bottom, right)``, half-open."""
        if self.field is None:
            raise ValueError(f"layer {self.name} has no receptive field")
        if self.reach is None:
            raise ValueError(f"layer {self.name} does not say which image rows and columns reach it")
        if self.field.whole_image:
            return 0, 0, self.reach[0], self.reach[1]
        top, left, bottom, right = self.field.box(i, j)
        return max(top, 0), max(left, 0), min(bottom, self.reach[0]), min(right, self.reach[1])

    @property
    def channels(self) -> int:
        return int(self.shape[1]) if len(self.shape) >= 2 else 1


class ScriptLeaf(nn.Module):
    """One TorchScript submodule wrapped so it takes forward hooks, which TorchScript refuses."""

    def __init__(self, script: torch.jit.ScriptModule):
        super().__init__()
        self.script = script

    def forward(self, x):
        return self.script(x)


class _Tracer(fx.Tracer):
    """Keeps torch.nn layers and TorchScript submodules as single nodes, traces through everything else."""

    def __init__(self, leaf_functions: tuple = ()):
        super().__init__(autowrap_functions=tuple(leaf_functions))

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        if isinstance(m, torch.jit.ScriptModule):
            return True
        return super().is_leaf_module(m, qualname)


def trace(model: nn.Module, leaf_functions: tuple = ()) -> fx.GraphModule:
    """The model's fx graph. Raises VisageError when the forward pass cannot be traced symbolically.

    ``leaf_functions`` are recorded as single calls instead of being traced through: use them for
    element-wise combinations written with Python control flow (e.g. adding tensors of unequal size
    after zero-padding the smaller at the bottom and right).
    """
    try:
        graph = _Tracer(leaf_functions).trace(model)
    except Exception as exc:  # noqa: BLE001 -- fx raises many kinds for data-dependent control flow
        raise VisageError(
            f"cannot trace {type(model).__name__} to compute receptive fields ({type(exc).__name__}: {exc}); "
            "a forward pass without data-dependent control flow is needed"
        ) from None
    return fx.GraphModule(model, graph)


def analyse(model: nn.Module, input_size: tuple[int, int] = (224, 224), leaf_functions: tuple = ()) -> dict[str, LayerInfo]:
    """Every module output of ``model`` that holds image features, with its exact receptive field.

    Returns an ordered dict keyed by layer name: the module's qualified name (``layers.conv3_3``,
    ``layer1.0``), with ``@k`` appended for the k-th extra call of a module used several times
    (``layer1.0.relu@1``). Shapes are those for one RGB image of ``input_size`` (height, width).
    ``leaf_functions`` (see :func:`trace`) combine their inputs element-wise, aligned at the top left.
    """
    gm = trace(model, leaf_functions)
    _propagate_shapes(gm, model, input_size)
    fields: dict[fx.Node, ReceptiveField | str | None] = {}
    bounds: set[fx.Node] = set()  # nodes whose field is only a bound for some channels
    reach: dict[fx.Node, tuple[int, int]] = {}  # image rows and columns that reach each node
    placeholders = 0
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            fields[node] = PIXEL if placeholders == 0 else None
            if placeholders == 0:
                reach[node] = (input_size[0], input_size[1])
            placeholders += 1
        elif node.op in ("get_attr", "output"):
            fields[node] = None
        else:
            fields[node] = _node_field(gm, node, fields, leaf_functions)
            if _is_bound(gm, node, fields, bounds):
                bounds.add(node)
            _propagate_reach(node, fields, reach)

    infos: dict[str, LayerInfo] = {}
    last_in_scope: dict[str, fx.Node] = {}
    for node in gm.graph.nodes:
        for scope in node.meta.get("nn_module_stack", {}):
            last_in_scope[scope] = node
    for scope, node in last_in_scope.items():
        shape = _shape(node)
        module = model.get_submodule(scope.split("@")[0])
        if shape is None or len(shape) not in (2, 4) or isinstance(module, torch.jit.ScriptModule):
            continue  # not image features, or a TorchScript module, which takes no hooks
        field = fields.get(node)
        kind = _class_name(module.script if isinstance(module, ScriptLeaf) else module)
        if isinstance(field, ReceptiveField):
            infos[scope] = LayerInfo(scope, kind, shape, field, exact=node not in bounds,
                                     reach=reach.get(node, (input_size[0], input_size[1])))
        else:
            infos[scope] = LayerInfo(scope, kind, shape, None, field or "does not depend on the image")
    position = {node: i for i, node in enumerate(gm.graph.nodes)}
    # Graph order; a block ending on the same node as its last layer comes after that layer.
    return dict(sorted(infos.items(), key=lambda kv: (position[last_in_scope[kv[0]]], -kv[0].count("."))))


def _propagate_shapes(gm: fx.GraphModule, model: nn.Module, input_size: tuple[int, int]) -> None:
    from torch.fx.passes.shape_prop import ShapeProp

    try:
        param = next(model.parameters())
        device, dtype = param.device, param.dtype
    except StopIteration:
        device, dtype = torch.device("cpu"), torch.float32
    probe = torch.rand(1, 3, *input_size, device=device, dtype=dtype)
    try:
        with torch.no_grad():
            ShapeProp(gm).propagate(probe)
    except Exception as exc:  # noqa: BLE001 -- whatever the user's model raises on the probe, say so
        raise VisageError(
            f"{type(model).__name__} does not run on a 1×3×{input_size[0]}×{input_size[1]} image "
            f"({type(exc).__name__}: {exc}); give the input size it expects"
        ) from None


def _shape(node: fx.Node) -> tuple[int, ...] | None:
    meta = node.meta.get("tensor_meta")
    shape = getattr(meta, "shape", None)
    return tuple(int(s) for s in shape) if shape is not None else None


def _module_name(node: fx.Node) -> str:
    """The qualified name of the module a ``call_module`` node calls."""
    if not isinstance(node.target, str):
        raise TypeError(f"{node.name} calls {node.target!r}, not a module by name")
    return node.target


def _class_name(m: nn.Module) -> str:
    # A TorchScript submodule keeps the name of the class it was scripted from.
    return getattr(m, "original_name", None) or type(m).__name__


_POOLS = {"MaxPool2d", "AvgPool2d", "LPPool2d"}
_POOL_FUNCTIONS = (F.max_pool2d, torch.max_pool2d, F.avg_pool2d, torch._C._nn.avg_pool2d)
_PADS = {"ZeroPad2d", "ConstantPad2d", "ReflectionPad2d", "ReplicationPad2d", "CircularPad2d"}
_UNSUPPORTED = {"ConvTranspose2d", "Upsample", "UpsamplingNearest2d", "UpsamplingBilinear2d", "PixelShuffle",
                "PixelUnshuffle", "Fold", "Unfold", "Conv1d", "Conv3d", "MaxPool1d", "MaxPool3d",
                "AvgPool1d", "AvgPool3d", "FractionalMaxPool2d"}


def _node_field(gm: fx.GraphModule, node: fx.Node, fields: dict, leaf_functions: tuple = ()) -> ReceptiveField | str | None:
    """The receptive field of one node's output; a string says why there is none."""
    inputs = [a for a in node.all_input_nodes if fields.get(a) is not None]
    if not inputs:
        return None
    for a in inputs:
        if isinstance(fields[a], str):
            return fields[a]
    source = fields[node.args[0]] if node.args and isinstance(node.args[0], fx.Node) else None
    no_source = f"{node.name}: its first argument does not carry the image features"

    if node.op == "call_function" and node.target in leaf_functions:
        return _union(node, inputs, fields)
    if node.op == "call_module":
        module = gm.get_submodule(_module_name(node))
        name = _class_name(module)
        if name == "Conv2d" or name in _POOLS or name in _PADS:
            if source is None:
                return no_source
            if name == "Conv2d":
                return source.through(*_conv_geometry(module.kernel_size, module.stride, module.padding,
                                                      module.dilation))
            if name in _POOLS:
                kernel = module.kernel_size
                stride = module.stride if module.stride is not None else kernel
                padding = getattr(module, "padding", 0)
                dilation = getattr(module, "dilation", 1)
                return source.through(kernel, stride, padding, dilation)
            left, _, top, _ = _pad4(module.padding)
            return source.shifted(top, left)
        if name in _UNSUPPORTED:
            return f"{node.target} ({name}) has no receptive-field rule"
    elif node.op == "call_function":
        target = node.target
        if target in (F.conv2d, torch.conv2d) + _POOL_FUNCTIONS + (F.pad,):
            if source is None:
                return no_source
            if target in (F.conv2d, torch.conv2d):
                weight = _arg(node, 1, "weight")
                weight_shape = _shape(weight) if isinstance(weight, fx.Node) else None
                if not weight_shape:
                    return f"{node.name}: conv2d with a kernel of unknown size"
                return source.through(*_conv_geometry(weight_shape[2:], _arg(node, 3, "stride", 1),
                                                      _arg(node, 4, "padding", 0), _arg(node, 5, "dilation", 1)))
            if target in _POOL_FUNCTIONS:
                kernel = _arg(node, 1, "kernel_size")
                stride = _arg(node, 2, "stride", None) or kernel
                padding = _arg(node, 3, "padding", 0)
                dilation = _arg(node, 4, "dilation", 1) if target in (F.max_pool2d, torch.max_pool2d) else 1
                return source.through(kernel, stride, padding, dilation)
            pad = _arg(node, 1, "pad")
            if len(pad) < 4:
                return source.shifted(0, pad[0])
            return source.shifted(pad[2], pad[0])
        if target in (F.interpolate, F.conv_transpose2d, F.pixel_shuffle, F.unfold, F.fold, F.grid_sample):
            return f"{node.name} ({getattr(target, '__name__', target)}) has no receptive-field rule"
        if target is operator.getitem and _shape(node) is None:
            return fields[node.args[0]]
    return _pointwise(node, inputs, fields)


def _propagate_reach(node: fx.Node, fields: dict, reach: dict) -> None:
    """Rows and columns of the image that reach ``node``: those its inputs reach, cut at the end of
    its last unit's field. Element-wise combinations reach what their widest input reaches."""
    field = fields.get(node)
    if not isinstance(field, ReceptiveField):
        return
    incoming = [reach[a] for a in node.all_input_nodes if a in reach]
    if not incoming:
        return
    rows, cols = max(r for r, _ in incoming), max(c for _, c in incoming)
    shape = _shape(node)
    if field.whole_image or shape is None or len(shape) != 4:
        reach[node] = (rows, cols)
        return
    reach[node] = (min(rows, field.y.span(shape[2] - 1)[1]), min(cols, field.x.span(shape[3] - 1)[1]))


def _is_bound(gm: fx.GraphModule, node: fx.Node, fields: dict, bounds: set) -> bool:
    """Whether some channels of ``node`` see less than its field: true from a concatenation of
    branches with different fields until an operation mixes all channels again."""
    field = fields.get(node)
    if not isinstance(field, ReceptiveField) or field.whole_image:
        return False
    inputs = [a for a in node.all_input_nodes if isinstance(fields.get(a), ReceptiveField)]
    if node.op == "call_function" and node.target in (torch.cat, torch.concat, torch.concatenate):
        dim = _arg(node, 1, "dim", 0)
        if dim in (1, -3) and len({fields[a] for a in inputs}) > 1:
            return True
    if node.op == "call_module":
        module = gm.get_submodule(_module_name(node))
        if _class_name(module) == "Linear" or (_class_name(module) == "Conv2d" and getattr(module, "groups", 1) == 1):
            return False
    if node.op == "call_function" and node.target in (F.conv2d, torch.conv2d, F.linear) and _arg(node, 6, "groups", 1) == 1:
        return False
    # An element-wise sum is exact when one exact input already spans the whole field.
    if any(a not in bounds and fields[a] == field for a in inputs):
        return False
    return any(a in bounds for a in inputs)


def _pointwise(node: fx.Node, inputs: list[fx.Node], fields: dict) -> ReceptiveField | str:
    """Any other operation: the union of its inputs' fields if it keeps the feature grid.

    An output without spatial axes, or with a 1×1 grid from a larger one, sees the whole image; an
    unknown operation that changes the grid in any other way has no known field.
    """
    out = _shape(node)
    union = _union(node, inputs, fields)
    if isinstance(union, str) or out is None:
        return union
    grids = {shape[2:] for a in inputs if (shape := _shape(a)) is not None and len(shape) == 4}
    if len(out) == 4 and grids and all(g == out[2:] for g in grids):
        return union
    if len(out) < 4 or (len(out) == 4 and out[2:] == (1, 1)):
        return WHOLE_IMAGE
    if not grids:
        return union
    return f"{node.name} ({node.op} {getattr(node.target, '__name__', node.target)}) changes the feature grid"


def _union(node: fx.Node, inputs: list[fx.Node], fields: dict) -> ReceptiveField | str:
    union = fields[inputs[0]]
    for a in inputs[1:]:
        try:
            union = union.union(fields[a])
        except ValueError as exc:
            return f"{node.name}: {exc}"
    return union


def _arg(node: fx.Node, index: int, name: str, default=None):
    if len(node.args) > index:
        return node.args[index]
    return node.kwargs.get(name, default)


def _pair(v) -> tuple[int, int]:
    if isinstance(v, (tuple, list)):
        return (int(v[0]), int(v[1])) if len(v) > 1 else (int(v[0]), int(v[0]))
    return int(v), int(v)


def _pad4(padding) -> tuple[int, int, int, int]:
    if isinstance(padding, int):
        return padding, padding, padding, padding
    left, right, top, bottom = (int(p) for p in padding)
    return left, right, top, bottom


def _conv_geometry(kernel, stride, padding, dilation) -> tuple:
    """Kernel, stride, padding, dilation pairs; ``padding='same'`` and ``'valid'`` become numbers."""
    kernel, stride, dilation = _pair(kernel), _pair(stride), _pair(dilation)
    if padding == "valid":
        padding = (0, 0)
    elif padding == "same":
        # PyTorch puts the smaller half of the total padding before the input.
        padding = tuple(d * (k - 1) // 2 for k, d in zip(kernel, dilation))
    return kernel, stride, _pair(padding), dilation


def gradient_support(
    net: nn.Module,
    layer: str,
    unit: int,
    position: tuple[int, int],
    input_size: tuple[int, int],
    *,
    trials: int = 1,
    seed: int = 0,
) -> tuple[int, int, int, int] | None:
    """Brute force: the bounding box ``(top, left, bottom, right)`` of input pixels whose gradient
    reaches one unit, over ``trials`` random inputs; None when no pixel does.

    It equals the receptive field clipped to the image when every path can carry gradient (no dead
    ReLU, max-pooling replaced by average pooling); otherwise it lies inside it. Use it to check
    :func:`analyse` on a new architecture.
    """
    module_name, _, call = layer.partition("@")
    wanted = int(call or 0)
    captured: list[torch.Tensor] = []

    class Stop(Exception):
        pass

    def hook(module, args, output):
        captured.append(output)
        if len(captured) > wanted:
            raise Stop  # the layers after this one cannot change its gradient

    handle = net.get_submodule(module_name).register_forward_hook(hook)
    generator = torch.Generator().manual_seed(seed)
    param = next(iter(net.parameters()), None)
    dtype = param.dtype if param is not None else torch.float32
    reached = torch.zeros(input_size, dtype=torch.bool)
    try:
        for _ in range(trials):
            captured.clear()
            x = torch.rand(1, 3, *input_size, generator=generator, dtype=dtype).requires_grad_(True)
            with torch.enable_grad():
                try:
                    net(x)
                except Stop:
                    pass
                out = captured[wanted]
                value = out[0, unit, position[0], position[1]] if out.ndim == 4 else out[0, unit]
                (grad,) = torch.autograd.grad(value, x)
            reached |= (grad[0] != 0).any(0)
    finally:
        handle.remove()
    rows = torch.nonzero(reached.any(1)).flatten()
    cols = torch.nonzero(reached.any(0)).flatten()
    if len(rows) == 0:
        return None
    return int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1


def clip_box(box: tuple[int, int, int, int], size: tuple[int, int]) -> tuple[int, int, int, int]:
    """A box ``(top, left, bottom, right)`` cut to an image of ``size`` (height, width)."""
    top, left, bottom, right = box
    return max(top, 0), max(left, 0), min(bottom, size[0]), min(right, size[1])
