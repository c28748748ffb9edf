"""Pictures and a web page of what units respond to: one grid PNG per layer and an index.html.

A grid has one row per unit: its index and score on the left, then its best patches, best first,
each with its activation underneath. Patches smaller than a tile are enlarged without smoothing,
so a 5-pixel receptive field shows as 5 honest blocks.
"""

from __future__ import annotations

import html
import json
import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image as PILImage
from PIL import ImageDraw, ImageFont

from .patches import LayerPatches

BACKGROUND = (255, 255, 255)
INK = (20, 20, 20)
FAINT = (110, 110, 110)


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType has one bitmap size
        return ImageFont.load_default()


def fit_tile(pixels: np.ndarray, tile: int) -> PILImage.Image:
    """An RGB patch scaled to fit a ``tile``×``tile`` square (blocky when enlarged), centred on white."""
    pil = PILImage.fromarray(pixels)
    h, w = pixels.shape[:2]
    scale = tile / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    method = PILImage.Resampling.NEAREST if scale >= 1 else PILImage.Resampling.LANCZOS
    pil = pil.resize(size, method)
    canvas = PILImage.new("RGB", (tile, tile), BACKGROUND)
    canvas.paste(pil, ((tile - size[0]) // 2, (tile - size[1]) // 2))
    return canvas


def labelled_grid(
    rows: Sequence[tuple[str, Sequence[tuple[np.ndarray, str]]]],
    *,
    title: str = "",
    tile: int = 72,
    label_width: int = 86,
    gap: int = 3,
) -> PILImage.Image:
    """A grid image: each row is (row label, [(pixels, caption), ...]); returns a PIL RGB image."""
    font, small, big = _font(12), _font(10), _font(14)
    columns = max((len(cells) for _, cells in rows), default=0)
    caption_h = 13
    title_h = 24 if title else 0
    width = label_width + columns * (tile + gap) + gap
    height = title_h + len(rows) * (tile + caption_h + gap) + gap
    canvas = PILImage.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((gap + 2, 5), title, fill=INK, font=big)
    for r, (label, cells) in enumerate(rows):
        y = title_h + gap + r * (tile + caption_h + gap)
        draw.multiline_text((4, y + 4), label, fill=INK, font=font, spacing=3)
        for c, (pixels, caption) in enumerate(cells):
            x = label_width + c * (tile + gap)
            canvas.paste(fit_tile(pixels, tile), (x, y))
            draw.text((x + 1, y + tile + 1), caption, fill=FAINT, font=small)
    return canvas


def layer_grid(layer: LayerPatches, tile: int = 72) -> PILImage.Image:
    """The grid of one layer: a row per unit, its best patches left to right."""
    rows = []
    for unit in layer.units:
        cells = [(p.pixels, _number(p.value)) for p in unit.patches if p.pixels is not None]
        rows.append((f"unit {unit.unit}\ntop {_number(unit.score)}", cells))
    size = "whole image" if layer.field.whole_image else f"{layer.field.size[0]}x{layer.field.size[1]} px"
    title = f"{layer.layer}  ·  receptive field {size}  ·  {layer.images_seen} images"
    return labelled_grid(rows, title=title, tile=tile)


def write_report(
    layers: Sequence[LayerPatches],
    out_dir: str | os.PathLike,
    *,
    model_name: str = "",
    skipped: Sequence[str] = (),
    warnings: Sequence[str] = (),
    tile: int = 72,
) -> Path:
    """Write one grid PNG per layer, ``report.json`` and ``index.html`` into ``out_dir``; returns the HTML path.

    ``warnings`` (from :func:`~visage.introspect.patches.patch_warnings`) head the page and the JSON."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sections, summary = [], []
    for layer in layers:
        png = f"{_file_stem(layer.layer)}.png"
        layer_grid(layer, tile).save(out / png)
        sections.append(_section(layer, png))
        summary.append(_layer_json(layer, png))
    (out / "report.json").write_text(json.dumps({"model": model_name, "layers": summary, "skipped": list(skipped),
                                                 "warnings": list(warnings)}, indent=1))
    index = out / "index.html"
    index.write_text(_page(model_name, sections, skipped, warnings), encoding="utf-8")
    return index


def _number(v: float) -> str:
    return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"


def _file_stem(layer: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", layer)


def _layer_json(layer: LayerPatches, png: str) -> dict:
    return {
        "layer": layer.layer, "kind": layer.kind, "grid": png, "channels": layer.channels,
        "images_seen": layer.images_seen,
        "receptive_field": None if layer.field.whole_image else {
            "size": list(layer.field.size), "stride": list(layer.field.stride),
            "start": [layer.field.y.start, layer.field.x.start]},
        "units": [{"unit": u.unit, "score": u.score, "mean_max": u.mean,
                   "patches": [{"value": p.value, "source": p.source, "position": list(p.position),
                                "box": list(p.box), "visible": list(p.visible)} for p in u.patches]}
                  for u in layer.units],
    }


def _section(layer: LayerPatches, png: str) -> str:
    e = html.escape
    field = "whole image" if layer.field.whole_image else e(layer.field.describe())
    rows = []
    for u in layer.units:
        cells = "".join(
            f"<td title='{e(p.source)} at feature ({p.position[0]}, {p.position[1]}), box {e(str(p.box))}'>"
            f"{_number(p.value)}<br><small>{e(p.source)}</small></td>" for p in u.patches)
        rows.append(f"<tr><th>{u.unit}</th><td>{_number(u.score)}</td><td>{_number(u.mean)}</td>{cells}</tr>")
    ranks = "".join(f"<th>#{i + 1}</th>" for i in range(max((len(u.patches) for u in layer.units), default=0)))
    return (f"<section id='{e(_file_stem(layer.layer))}'><h2>{e(layer.layer)} <small>({e(layer.kind)}, "
            f"{layer.channels} units)</small></h2><p>Receptive field: {field}. Images seen: {layer.images_seen}.</p>"
            f"<img src='{e(png)}' alt='top patches of {e(layer.layer)}'>"
            f"<table><tr><th>unit</th><th>score</th><th>mean max</th>{ranks}</tr>{''.join(rows)}</table></section>")


def _page(model_name: str, sections: list[str], skipped: Sequence[str], warnings: Sequence[str] = ()) -> str:
    e = html.escape
    skipped_html = "".join(f"<p><strong>Note:</strong> {e(w)}</p>" for w in warnings)
    if skipped:
        items = "".join(f"<li>{e(s)}</li>" for s in skipped)
        skipped_html += f"<details><summary>{len(skipped)} images skipped</summary><ul>{items}</ul></details>"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>visage inspect: {e(model_name)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
img {{ max-width: 100%; image-rendering: pixelated; border: 1px solid #ddd; }}
table {{ border-collapse: collapse; font-size: 12px; margin: 1em 0 3em; }}
td, th {{ border: 1px solid #ddd; padding: 3px 6px; text-align: right; vertical-align: top; }}
small {{ color: #777; }}
</style></head><body>
<h1>What the units of {e(model_name)} respond to</h1>
<p>Each row is one unit; its image patches are the receptive field of the unit at the position of its
strongest response in each of the images that drive it most, best first, cut to the part of the image
it sees. <em>score</em> is the mean of the unit's shown activations; <em>mean max</em> is the mean
over all images of the unit's strongest response.</p>
{skipped_html}
{''.join(sections)}
</body></html>
"""


def maximized_grid(result, columns: int = 8, tile: int | None = None) -> PILImage.Image:
    """The images of a :class:`~visage.introspect.maximize.MaximizedUnits`, ``columns`` per row, captioned."""
    tile = tile or max(96, min(192, result.images.shape[1]))
    cells = [(image, f"unit {u}: {_number(v)}") for u, image, v in zip(result.units, result.images, result.final)]
    rows = [("", cells[i:i + columns]) for i in range(0, len(cells), columns)]
    title = f"{result.model} {result.layer}: images that maximise each unit ({result.objective} objective)"
    return labelled_grid(rows, title=title, tile=tile, label_width=3)


def save_maximized(result, path: str | os.PathLike, columns: int = 8) -> Path:
    """Write the grid of maximising images to ``path`` (PNG unless it names another format) and the
    numbers beside it (same name, ``.json``); returns the image path."""
    path = Path(path)
    if not path.suffix:
        path = path.with_suffix(".png")
    path.parent.mkdir(parents=True, exist_ok=True)
    maximized_grid(result, columns).save(path)
    numbers = {"model": result.model, "layer": result.layer, "objective": result.objective,
               "units": [{"unit": u, "start": float(s), "final": float(f)}
                         for u, s, f in zip(result.units, result.start, result.final)]}
    path.with_suffix(".json").write_text(json.dumps(numbers, indent=1))
    return path
