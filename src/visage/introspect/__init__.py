"""ConvNet introspection: what the hidden units of a network respond to, layer by layer.

- :func:`top_patches` and :func:`write_report`: the image patches that drive each unit most
  (Zeiler & Fergus), cut at each unit's exact receptive field, as grid PNGs and one HTML page;
- :func:`maximize` and :func:`save_maximized`: images made by regularised gradient ascent to
  drive one unit each;
- :func:`receptive_fields`: every layer's exact receptive field, from the module graph.

``model`` is ``"vgg16"``, a PyTorch face encoder's name, a saved model's path or an ``nn.Module``
(see :func:`resolve_model`). Example::

    from visage.introspect import top_patches, write_report, maximize, save_maximized
    layers = top_patches("vgg16", ["conv1_2", "conv3_3", "conv5_3"], "photos/")
    write_report(layers, "report/", model_name="vgg16")
    save_maximized(maximize("vgg16", "conv4_3", range(16)), "maxact.png")
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

from .maximize import MaximizedUnits, maximize
from .patches import LayerPatches, Patch, UnitPatches, image_set_for, patch_warnings, top_patches
from .receptive import LayerInfo, ReceptiveField, gradient_support
from .report import save_maximized, write_report
from .targets import Inspectable, resolve_model

__all__ = [
    "Inspectable", "LayerInfo", "LayerPatches", "MaximizedUnits", "Patch", "ReceptiveField", "UnitPatches",
    "gradient_support", "inspect_images", "maximize", "patch_warnings", "receptive_fields", "resolve_model",
    "save_maximized",
    "top_patches", "write_report",
]


def receptive_fields(model, input_size: int | tuple[int, int] | None = None) -> dict[str, LayerInfo]:
    """Every layer of ``model`` with image features, in forward order, with its exact receptive field."""
    return resolve_model(model, input_size=input_size).layers()


def inspect_images(
    model,
    images: str | os.PathLike | Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    layers: Sequence[str] | None = None,
    *,
    warn: Callable[[str], None] | None = None,
    **options,
) -> Path:
    """:func:`top_patches` then :func:`write_report`: returns the path of the report's index.html.

    ``options`` go to :func:`top_patches` (units, per_unit, image_size, batch_size, face_chips,
    device, progress). Each of :func:`patch_warnings` goes into the report, and to ``warn`` when given.
    """
    target = resolve_model(model)
    image_set = image_set_for(target, images, options.pop("image_size", None), options.pop("face_chips", None))
    found = top_patches(target, layers, image_set, **options)
    notes = patch_warnings(found, options.get("per_unit", 9))
    if warn is not None:
        for note in notes:
            warn(note)
    return write_report(found, out_dir, model_name=target.name, skipped=image_set.skipped, warnings=notes)
