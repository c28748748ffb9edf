"""Top-activating image patches per unit (Zeiler & Fergus), for many layers in one pass.

Forward hooks on every requested layer see each batch once; each hook reduces its feature map to
one maximum per (image, unit) and merges it into a bounded top-k table per unit, then drops the
map. Memory is therefore (units × k) per layer whatever the number of images. The forward pass
stops as soon as the deepest requested layer has been seen. Afterwards only the images that won a
place are decoded again, and each patch is cut at its unit's exact receptive field around the
position of the maximum, filled with grey where the field leaves the image.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from ..errors import VisageError
from .images import FaceChips, FolderImages
from .receptive import LayerInfo, ReceptiveField
from .targets import Inspectable, resolve_model

#: Grey (in uint8) that fills the part of a receptive field outside the image.
FILL = 128


class TopK:
    """The k largest values seen by each unit, with where they were: a bounded top-k table per unit.

    ``values`` is (units, k), best first, -inf where fewer than k images were seen; ``items``,
    ``rows`` and ``cols`` give the image item and feature position of each value.
    """

    def __init__(self, units: int, k: int, device: torch.device | str = "cpu"):
        self.k = k
        self.values = torch.full((units, k), -torch.inf, device=device)
        self.items = torch.full((units, k), -1, dtype=torch.long, device=device)
        self.rows = torch.zeros((units, k), dtype=torch.long, device=device)
        self.cols = torch.zeros((units, k), dtype=torch.long, device=device)
        self.total = torch.zeros(units, dtype=torch.float64, device=device)
        self.count = 0

    def push(self, features: torch.Tensor, items: torch.Tensor) -> None:
        """Merge one batch of feature maps (B, units, H, W) or vectors (B, units) seen on ``items`` (B,)."""
        if features.ndim == 2:
            features = features[:, :, None, None]
        b, c, _h, w = features.shape
        best, where = features.detach().float().flatten(2).max(dim=2)  # (B, C): one maximum per image and unit
        self.total += best.sum(0).double()
        self.count += b
        values = torch.cat([self.values, best.T], dim=1)
        items = torch.cat([self.items, items.to(self.items.device).expand(c, b)], dim=1)
        rows = torch.cat([self.rows, (where // w).T], dim=1)
        cols = torch.cat([self.cols, (where % w).T], dim=1)
        self.values, order = values.topk(self.k, dim=1)
        self.items = items.gather(1, order)
        self.rows = rows.gather(1, order)
        self.cols = cols.gather(1, order)

    def scores(self) -> torch.Tensor:
        """Each unit's mean over its kept values: how strongly its best images drive it."""
        seen = torch.isfinite(self.values)
        return torch.where(seen, self.values, 0).sum(1) / seen.sum(1).clamp(min=1)

    def mean(self) -> torch.Tensor:
        """Each unit's mean, over all images, of its per-image maximum."""
        return (self.total / max(self.count, 1)).float()


@dataclass
class Patch:
    """One image patch: the receptive field of a unit at the position of its maximum on one image.

    ``box`` is the field ``(top, left, bottom, right)`` in the image's pixels (it may extend past
    the image); ``visible`` is the part of the image the unit sees; ``pixels`` shows ``box`` with
    grey everywhere outside ``visible``.
    """

    value: float
    source: str
    item: int
    position: tuple[int, int]
    box: tuple[int, int, int, int]
    visible: tuple[int, int, int, int]
    pixels: np.ndarray | None = field(default=None, repr=False)


@dataclass
class UnitPatches:
    """A unit's best patches, best first; ``score`` is their mean activation, ``mean`` its mean per-image maximum."""

    unit: int
    score: float
    mean: float
    patches: list[Patch]


@dataclass
class LayerPatches:
    """The result for one layer: its receptive field and its chosen units with their patches."""

    layer: str
    kind: str
    field: ReceptiveField
    channels: int
    units: list[UnitPatches]
    images_seen: int
    #: Side in pixels of the (square) images the network saw.
    image_size: int = 0

    @property
    def whole_images(self) -> bool:
        """Do this layer's fields cover the whole input, so that its patches are whole images?"""
        side = (self.image_size, self.image_size)
        return self.field.whole_image or (self.field.size[0] >= side[0] and self.field.size[1] >= side[1])


def top_patches(
    model: str | os.PathLike | torch.nn.Module | Inspectable,
    layers: Sequence[str] | None = None,
    images: str | os.PathLike | Sequence[str | os.PathLike] | FolderImages | FaceChips | None = None,
    *,
    units: int | Sequence[int] = 9,
    per_unit: int = 9,
    image_size: int | None = None,
    batch_size: int = 16,
    face_chips: bool | None = None,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> list[LayerPatches]:
    """For each layer, the units that respond most strongly and the image patches that drive them.

    ``model`` is anything :func:`resolve_model` takes; ``layers`` are layer names (default: an
    early, a middle and the last convolution). ``images`` is a folder, a list of files, or an image
    set. Face encoders see the aligned chips of every face found (``face_chips`` decides for other
    models); other models see each image resized to ``image_size`` and centre-cropped.
    ``units`` is how many units to show (the ones whose ``per_unit`` best activations are highest)
    or an explicit list of unit indices. Returns one :class:`LayerPatches` per layer, in order given.
    """
    target = resolve_model(model)
    if per_unit < 1 or batch_size < 1 or (isinstance(units, int) and units < 1):
        raise VisageError("units, per_unit and batch_size must be at least 1")
    if images is None:
        raise VisageError("no images given: pass a folder of images")
    image_set = image_set_for(target, images, image_size, face_chips)
    size = image_set.size  # the layers' reach depends on the size of the images
    infos = [target.layer(name, size) for name in (layers or target.default_layers())]
    tables = collect(target, infos, image_set, per_unit=per_unit, batch_size=batch_size, device=device,
                     progress=progress)
    results = []
    for info in infos:
        table = tables[info.name]
        chosen = _choose_units(table, units, info)
        results.append(_layer_result(info, table, chosen, image_set))
    _cut_patches(results, image_set)
    return results


def image_set_for(target: Inspectable, images, image_size: int | None = None, face_chips: bool | None = None):
    """The images a model should see: aligned face chips for face encoders (or when ``face_chips``),
    else each image resized to ``image_size`` (default: the model's input size) and centre-cropped."""
    if isinstance(images, (FolderImages, FaceChips)):
        return images
    if face_chips is None:
        face_chips = target.encoder is not None
    if face_chips:
        if target.encoder is None:
            from ..encoders import get_encoder

            encoder = get_encoder()
        else:
            encoder = target.encoder
        return FaceChips(images, encoder)
    return FolderImages(images, image_size or target.input_size[0])


def collect(
    target: Inspectable,
    layers: Sequence[LayerInfo],
    image_set: FolderImages | FaceChips,
    *,
    per_unit: int = 9,
    batch_size: int = 16,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> dict[str, TopK]:
    """One pass over ``image_set`` with a forward hook on every layer: returns a :class:`TopK` per layer name."""
    device = torch.device(device)
    target = target.on(device)
    net = target.net
    tables = {info.name: TopK(info.channels, per_unit, device) for info in layers}
    current_items: list[torch.Tensor] = []
    hooks = _Hooks(net, layers, tables, current_items)
    bar = tqdm(total=len(image_set), unit="img", desc="top patches", disable=not progress)
    seen = 0
    try:
        with torch.inference_mode():
            for items, pixels in image_set.batches(batch_size, bar):
                current_items[:] = [torch.tensor(items, device=device)]
                x = torch.from_numpy(pixels).to(device).permute(0, 3, 1, 2).float().div_(255.0)
                hooks.run(lambda x=x: net(target.net_input(x)))
                seen += len(items)
    finally:
        hooks.remove()
        bar.close()
    if seen == 0:
        raise VisageError(f"none of the {len(image_set)} image files could be used: "
                          + "; ".join(image_set.skipped[:5]))
    return tables


class _StopForward(Exception):
    """Raised by the last hook of a batch: the layers after it are not needed."""


class _Hooks:
    """Forward hooks that feed each requested layer's output to its table, counting repeated calls."""

    def __init__(self, net: torch.nn.Module, layers: Sequence[LayerInfo], tables: dict[str, TopK],
                 current_items: list[torch.Tensor]):
        self.wanted: dict[str, dict[int, str]] = defaultdict(dict)  # module → call number → layer name
        for info in layers:
            module_name, _, call = info.name.partition("@")
            self.wanted[module_name][int(call or 0)] = info.name
        self.tables = tables
        self.current_items = current_items
        self.calls: dict[str, int] = {}
        self.pending: set[str] = set()
        self.handles = [net.get_submodule(m).register_forward_hook(self._hook(m)) for m in self.wanted]

    def _hook(self, module_name: str):
        def hook(module, args, output):
            call = self.calls.get(module_name, 0)
            self.calls[module_name] = call + 1
            layer = self.wanted[module_name].get(call)
            if layer is None:
                return
            if not torch.is_tensor(output):
                raise VisageError(f"layer {layer} returns a {type(output).__name__}, not a feature tensor")
            self.tables[layer].push(output, self.current_items[0])
            self.pending.discard(layer)
            if not self.pending:
                raise _StopForward

        return hook

    def run(self, forward) -> None:
        self.calls.clear()
        self.pending = {name for calls in self.wanted.values() for name in calls.values()}
        try:
            forward()
        except _StopForward:
            pass
        if self.pending:
            raise VisageError(f"layers {sorted(self.pending)} were not reached in the forward pass")

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def patch_warnings(layers: Sequence[LayerPatches], per_unit: int) -> list[str]:
    """What a reader of the report should know: too few images for ``per_unit`` patches per unit,
    and layers whose receptive fields cover the whole input (their patches are whole images)."""
    notes = []
    seen = min((layer.images_seen for layer in layers), default=0)
    if seen < per_unit:
        notes.append(f"only {seen} image(s) seen: each unit shows at most {seen} patch(es), one per image; "
                     "give a folder with more images")
    whole = [layer.layer for layer in layers if layer.whole_images]
    if whole:
        size = layers[0].image_size
        notes.append(f"{', '.join(whole)}: the receptive field covers the whole {size} px input, so the patches "
                     "are whole images; earlier layers (--list-layers) show parts")
    return notes


def _choose_units(table: TopK, units: int | Sequence[int], info: LayerInfo) -> list[int]:
    if isinstance(units, int):
        order = torch.argsort(table.scores(), descending=True)
        return [int(u) for u in order[:units]]
    chosen = [int(u) for u in units]
    bad = [u for u in chosen if not 0 <= u < info.channels]
    if bad:
        raise VisageError(f"layer {info.name} has units 0–{info.channels - 1}; no unit {bad[0]}")
    return chosen


def _layer_result(info: LayerInfo, table: TopK, chosen: list[int], image_set) -> LayerPatches:
    field = info.field
    if field is None:
        raise VisageError(f"layer {info.name} has no receptive field: {info.reason}")
    scores, means = table.scores().cpu(), table.mean().cpu()
    values, items = table.values.cpu(), table.items.cpu()
    rows, cols = table.rows.cpu(), table.cols.cpu()
    units = []
    for u in chosen:
        patches = []
        for r in range(table.k):
            if items[u, r] < 0:
                break
            i, j = int(rows[u, r]), int(cols[u, r])
            visible = info.visible_box(i, j)
            box = field.box(i, j) if not field.whole_image else visible
            patches.append(Patch(float(values[u, r]), image_set.label(int(items[u, r])), int(items[u, r]), (i, j),
                                 box, visible))
        units.append(UnitPatches(u, float(scores[u]), float(means[u]), patches))
    return LayerPatches(info.name, info.kind, field, info.channels, units, table.count, image_set.size)


def _cut_patches(results: list[LayerPatches], image_set) -> None:
    """Decode each image that won a place once, and cut all its patches: each unit's field cut to
    the part of the image it sees (its ``visible`` box), so no patch is mostly padding."""
    by_item: dict[int, list[Patch]] = defaultdict(list)
    for layer in results:
        for unit in layer.units:
            for patch in unit.patches:
                by_item[patch.item].append(patch)
    for item in sorted(by_item):
        pixels = image_set.load(item)
        for patch in by_item[item]:
            patch.pixels = crop(pixels, patch.visible)


def crop(pixels: np.ndarray, box: tuple[int, int, int, int], visible: tuple[int, int, int, int] | None = None,
         fill: int = FILL) -> np.ndarray:
    """The box ``(top, left, bottom, right)`` of an (H, W, 3) image; parts outside the image, or
    outside the ``visible`` box when given, are ``fill``."""
    top, left, bottom, right = box
    out = np.full((bottom - top, right - left, pixels.shape[2]), fill, dtype=pixels.dtype)
    h, w = pixels.shape[:2]
    if visible is not None:
        h, w = min(h, visible[2]), min(w, visible[3])
    y0, y1, x0, x1 = max(top, 0), min(bottom, h), max(left, 0), min(right, w)
    if y0 < y1 and x0 < x1:
        out[y0 - top:y1 - top, x0 - left:x1 - left] = pixels[y0:y1, x0:x1]
    return out
