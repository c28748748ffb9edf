"""How the style weight β shapes the result: one row of images per β, with the final loss terms.

    .venv/bin/python bench/bench_style_weights.py --size 256 --steps 100 --weights 0.1,0.3,1,3,10

Writes bench/results/style_weights.json and a contact sheet bench/results/style_weights.png
(content | one image per β), used to choose visage's default β. Without --save both go to
bench/results/local/ instead.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))
from _results import DEV_DATA, add_save_flag, results_dir  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--weights", default="0.1,0.3,1,3,10")
    parser.add_argument("--network", default="vgg16-hed")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--content", default=str(DEV_DATA / "style/content/tubingen.jpg"))
    parser.add_argument("--styles", default=str(DEV_DATA / "style/style/starry_night.jpg"),
                        help="comma-separated style images, one row each")
    parser.add_argument("--out", help="JSON to write, the contact sheet beside it (default: in the results folder)")
    add_save_flag(parser)
    args = parser.parse_args()

    from PIL import Image

    from visage.media.images import load_image
    from visage.style import StyleSettings, style_distance, stylize

    betas = [float(b) for b in args.weights.split(",")]
    rows, sheet_rows = [], []
    for style in args.styles.split(","):
        tiles = [load_image(args.content).pixels]
        for beta in betas:
            settings = StyleSettings(size=args.size, steps=args.steps, style_weight=beta, network=args.network,
                                     device=args.device, threads=args.threads)
            result = stylize(args.content, style, settings, progress=False)
            last = result.history[-1]
            rows.append({"style": Path(style).name, "beta": beta, "content": last["content"], "style_term": last["style"],
                             "total": last["total"], "style_distance": style_distance(result.pixels, style, size=args.size,
                                                                                network=args.network, device=args.device)})
            print(json.dumps(rows[-1]), flush=True)
            tiles.append(result.pixels)
        sheet_rows.append(tiles)
    out = Path(args.out) if args.out else results_dir(args.save) / "style_weights.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"settings": vars(args), "rows": rows}, indent=2))
    height = 128
    scaled = [[Image.fromarray(t).resize((round(t.shape[1] * height / t.shape[0]), height), Image.LANCZOS) for t in row]
              for row in sheet_rows]
    width = max(sum(t.width for t in row) for row in scaled)
    sheet = Image.new("RGB", (width, height * len(scaled)), "white")
    for r, row in enumerate(scaled):
        x = 0
        for t in row:
            sheet.paste(t, (x, r * height))
            x += t.width
    sheet.save(out.with_suffix(".png"))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
