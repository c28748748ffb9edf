"""visage's loss curve under the settings of Gatys' own notebook, beside the published curve.

The notebook (leongatys/PytorchNeuralStyleTransfer, see
../shared/data/reference/style_gatys_notebook_losses.tsv) used VGG19 with Caffe weights; those are
not available here, so visage runs VGG16-HED (or --network) with the same recipe otherwise:
style layers relu1_1..relu5_1 weighted 1000/n_C², content relu4_2 weight 1, Gram = FFᵀ/(h·w),
MSE costs, L-BFGS from the content image, 500 evaluations with the short side at 512 px, then 200
at 800 px starting from the upsampled result. The notebook's loss is 4 × visage's J under these
weights (its MSEs are visage's costs without the 1/4), so the curve is printed in its units.

    .venv/bin/python bench/bench_style_gatys.py --device cuda           # the full recipe
    .venv/bin/python bench/bench_style_gatys.py --scale 0.25 --steps 100 # a CPU-sized look

Writes style_gatys_curve.json, its image (.png) and plot (_plot.png) into bench/results/ with
--save, else into bench/results/local/.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))
from _results import DEV_DATA, add_save_flag, results_dir  # noqa: E402


def long_side_for_short(pixels: np.ndarray, short: int) -> int:
    h, w = pixels.shape[:2]
    return round(short * max(h, w) / min(h, w))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--network", default="vgg16-hed")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--scale", type=float, default=1.0, help="scale both stage sizes (1: 512 then 800 short side)")
    parser.add_argument("--steps", type=int, default=500, help="evaluations at the first stage (notebook: 500)")
    parser.add_argument("--fine-steps", type=int, default=200, help="evaluations at the second stage (notebook: 200)")
    parser.add_argument("--out", help="JSON to write, the PNGs beside it (default: in the results folder)")
    add_save_flag(parser)
    args = parser.parse_args()

    import torch

    from visage.media.images import load_image
    from visage.style import StyleSettings, stylize
    from visage.style.features import channels, load_feature_net

    torch.set_num_threads(args.threads)
    content = load_image(DEV_DATA / "style/content/tubingen.jpg")
    style = load_image(DEV_DATA / "style/style/vangogh_starry_night.jpg")
    net = load_feature_net(args.network)
    layers = ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"]
    weights = {name: 1e3 / channels(net, name) ** 2 for name in layers}

    published = []
    with open(DEV_DATA / "reference/style_gatys_notebook_losses.tsv") as f:
        rows = [line for line in f if not line.startswith("#")]
    for row in csv.DictReader(rows, delimiter="\t"):
        published.append({"stage": row["stage"], "iteration": int(row["iteration"]), "loss": float(row["total_loss"])})

    stages, result, curve = [("lowres_512", 512, args.steps), ("highres_800", 800, args.fine_steps)], None, []
    started = time.perf_counter()
    for stage, short, steps in stages:
        short = round(short * args.scale)
        settings = StyleSettings(size=long_side_for_short(content.pixels, short), steps=steps,
                                 coarse_size=100_000, content_weight=1.0, style_weight=1.0, style_layers=weights,
                                 content_layer="relu4_2", network=args.network, device=args.device,
                                 threads=args.threads, style_size=long_side_for_short(style.pixels, short))
        result = stylize(content, style, settings, init_image=result.pixels if result else None, progress=True)
        for entry in result.history:
            if entry["step"] % 50 == 0:
                curve.append({"stage": stage, "iteration": entry["step"], "loss": 4.0 * entry["total"]})
    seconds = time.perf_counter() - started

    out = Path(args.out) if args.out else results_dir(args.save) / "style_gatys_curve.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    from PIL import Image
    small = Image.fromarray(result.pixels)
    small.thumbnail((512, 512), Image.LANCZOS)
    small.save(out.with_suffix(".png"))
    report = {"settings": {"network": result.network, "device": args.device, "threads": args.threads, "scale": args.scale,
                                "steps": args.steps, "fine_steps": args.fine_steps, "style_layer_weights": weights},
                  "seconds": seconds, "visage": curve, "published": published,
                  "note": "published: VGG19 (Caffe weights), GPU, 2017; visage: the network named in settings. "
                       "Loss in the notebook's units (4 × visage's J)."}
    out.write_text(json.dumps(report, indent=2))
    pub = {(p["stage"], p["iteration"]): p["loss"] for p in published}
    v0, p0 = curve[0]["loss"] if curve else float("nan"), published[0]["loss"]
    print(f"{'stage':<12} {'iter':>5} {'visage':>12} {'published':>12} {'visage/first':>13} {'published/first':>16}")
    for c in curve:
        ref = pub.get((c["stage"], c["iteration"]), float("nan"))
        print(f"{c['stage']:<12} {c['iteration']:>5} {c['loss']:>12.4g} {ref:>12.4g} "
              f"{c['loss'] / v0:>13.3f} {ref / p0:>16.3f}")
    _plot(curve, published, out.with_name(out.stem + "_plot.png"))
    print(f"wrote {out} ({seconds:.0f} s)")


def _plot(curve, published, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=80)
    for data, label, style in ((curve, "visage (VGG16-HED)", "o-"), (published, "Gatys notebook (VGG19)", "s--")):
        low_end = max((d["iteration"] for d in data if d["stage"] == "lowres_512"), default=0)
        offset = {"lowres_512": 0, "highres_800": low_end}
        xs = [offset[d["stage"]] + d["iteration"] for d in data]
        first = data[0]["loss"]  # the networks differ, so compare shapes: loss / loss at evaluation 50
        ax.plot(xs, [d["loss"] / first for d in data], style, label=label, markersize=3)
    ax.set_xlabel("L-BFGS evaluations (512 px, then 800 px)")
    ax.set_ylabel("loss / loss at evaluation 50")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)


if __name__ == "__main__":
    main()
