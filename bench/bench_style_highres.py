"""High resolution: peak memory and time per step of visage's coarse-to-fine style transfer up to a
2048-px output, beside the plain tutorial implementation doing a single step at the full size.

    .venv/bin/python bench/bench_style_highres.py --size 2048 --steps 4 --fine-steps 2

Each implementation runs in its own process; peak memory is the process's peak resident set size.
Writes bench/results/style_highres.json and a small preview PNG with --save, else both into
bench/results/local/.
"""

from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))
from _results import DEV_DATA, add_save_flag, peak_rss_mb, results_dir  # noqa: E402


def _child(kind: str, cfg: dict, queue) -> None:
    import numpy as np
    import torch

    torch.set_num_threads(cfg["threads"])
    from visage.media.images import load_image
    from visage.style import StyleSettings, stylize
    from visage.style.features import load_feature_net
    from visage.style.transfer import _resize_exact, _resize_long, _to_tensor, resolve_style_layers

    net = load_feature_net(cfg["network"])
    before = peak_rss_mb()
    if kind == "visage":
        settings = StyleSettings(size=cfg["size"], steps=cfg["steps"], fine_steps=cfg["fine_steps"],
                                 network=cfg["network"], threads=cfg["threads"])
        stamps = [(None, time.perf_counter())]
        result = stylize(cfg["content"], cfg["style"], settings, progress=True,
                         callback=lambda e: stamps.append((e["size"], time.perf_counter())))
        per_level: dict[int, list[float]] = {}
        for (_, t0), (size, t1) in itertools.pairwise(stamps):
            per_level.setdefault(size, []).append(t1 - t0)
        from PIL import Image
        preview = Image.fromarray(result.pixels)
        preview.thumbnail((384, 384), Image.LANCZOS)
        preview.save(cfg["preview"])
        levels = {str(k): {"steps": len(v), "median_step_s": float(np.median(v))} for k, v in per_level.items()}
        out = {"levels": levels, "output_shape": list(result.pixels.shape), "final_loss": result.final_loss}
    else:
        from gatys_reference import run_reference

        weights = resolve_style_layers(net, None)
        content_px = _resize_long(load_image(cfg["content"]).pixels, cfg["size"])
        h, w = content_px.shape[:2]
        # the tutorial's loss modules need the style image the content's size
        content, style = _to_tensor(content_px), _to_tensor(_resize_exact(load_image(cfg["style"]).pixels, w, h))
        _, times, _ = run_reference(net, content, style, steps=1, content_layer="relu4_2", style_weights=weights,
                                    freeze_weights=True)
        out = {"levels": {str(cfg["size"]): {"steps": 1, "median_step_s": float(times[0])}}}
    out.update(kind=kind, rss_before_run_mb=before, peak_rss_mb=peak_rss_mb())
    queue.put(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--steps", type=int, default=4, help="steps at the coarsest level")
    parser.add_argument("--fine-steps", type=int, default=2, help="steps at each finer level")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--network", default="vgg16-hed")
    parser.add_argument("--content", default=str(DEV_DATA / "style/content/tubingen.jpg"))
    parser.add_argument("--style", default=str(DEV_DATA / "style/style/starry_night.jpg"))
    parser.add_argument("--skip-reference", action="store_true")
    parser.add_argument("--out", help="JSON to write, the preview beside it (default: in the results folder)")
    add_save_flag(parser)
    args = parser.parse_args()
    out = Path(args.out) if args.out else results_dir(args.save) / "style_highres.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    cfg = {"size": args.size, "steps": args.steps, "fine_steps": args.fine_steps, "threads": args.threads,
           "network": args.network, "content": args.content, "style": args.style,
           "preview": str(out.with_suffix(".png"))}
    ctx = mp.get_context("spawn")
    runs = {}
    for kind in ["visage"] + ([] if args.skip_reference else ["reference"]):
        print(f"running {kind} at {args.size} px ...", flush=True)
        queue = ctx.Queue()
        proc = ctx.Process(target=_child, args=(kind, cfg, queue))
        proc.start()
        try:
            runs[kind] = queue.get(timeout=3600)
        except Exception:  # noqa: BLE001 -- queue.Empty or a dead child: the run is recorded as failed
            runs[kind] = {"kind": kind, "failed": f"no result (exit code {proc.exitcode}; out of memory?)"}
        proc.join()
        print(json.dumps(runs[kind], indent=1))
    report = {"settings": {k: v for k, v in cfg.items() if k != "preview"}, "cpus": os.cpu_count(), "runs": runs,
                  "when": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
    if "reference" in runs and "peak_rss_mb" in runs["reference"]:
        report["peak_rss_visage_over_reference"] = runs["visage"]["peak_rss_mb"] / runs["reference"]["peak_rss_mb"]
    out.write_text(json.dumps(report, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
