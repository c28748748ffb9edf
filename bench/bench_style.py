"""Gatys style transfer: visage against a plain tutorial implementation, side by side.

Both optimise the same objective (same network, content and style layers, layer weights, cost
normalisation, size, step count, L-BFGS from the content image). Each runs in its own process
so that its peak memory can be read. Prints time per step, final loss and peak memory as
ratios, and how much sooner visage's loss reaches the reference's final loss; writes
bench/results/style_bench.json and a small PNG of the results (with --save; else both go to
bench/results/local/).

    .venv/bin/python bench/bench_style.py --size 512 --steps 20
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))
from _results import DEV_DATA, add_save_flag, peak_rss_mb, results_dir  # noqa: E402


def _inputs(cfg: dict):
    """Content at long side ``size``; style resized to exactly the content's shape, since the
    tutorial's loss modules need both images the same size."""
    from visage.media.images import load_image
    from visage.style.transfer import _resize_exact, _resize_long

    content = _resize_long(load_image(cfg["content"]).pixels, cfg["size"])
    h, w = content.shape[:2]
    return content, _resize_exact(load_image(cfg["style"]).pixels, w, h)


def _child(kind: str, cfg: dict, queue) -> None:
    import torch

    torch.set_num_threads(cfg["threads"])
    from visage.style import StyleSettings, stylize
    from visage.style.features import load_feature_net
    from visage.style.transfer import _to_pixels, _to_tensor, resolve_style_layers

    net = load_feature_net(cfg["network"], cfg["device"])
    weights = resolve_style_layers(net, None)
    content, style = _inputs(cfg)
    if cfg["device"] == "cuda":
        torch.cuda.reset_peak_memory_stats()
    rss_before = peak_rss_mb()
    started = time.perf_counter()
    if kind == "visage":
        settings = StyleSettings(size=cfg["size"], steps=cfg["steps"], coarse_size=cfg["size"], network=cfg["network"],
                                 device=cfg["device"], threads=cfg["threads"], style_weight=cfg["style_weight"],
                                 content_weight=cfg["content_weight"])
        stamps = [time.perf_counter()]
        result = stylize(content, style, settings, progress=False, callback=lambda e: stamps.append(time.perf_counter()))
        times = np.diff(stamps)
        losses = [e["total"] for e in result.history]
        pixels = result.pixels
    else:
        from gatys_reference import run_reference

        def sync():
            if cfg["device"] == "cuda":
                torch.cuda.synchronize()
        image, times, losses = run_reference(
            net, _to_tensor(content, cfg["device"]), _to_tensor(style, cfg["device"]), steps=cfg["steps"],
            content_layer="relu4_2", style_weights=weights, content_weight=cfg["content_weight"],
            style_weight=cfg["style_weight"], freeze_weights=(kind == "reference-frozen"))
        sync()
        pixels = _to_pixels(image)
        losses = list(losses)
    total = time.perf_counter() - started
    gpu_peak = torch.cuda.max_memory_allocated() / 2**20 if cfg["device"] == "cuda" else None
    queue.put({"kind": kind, "times": list(map(float, times)), "losses": losses, "pixels": pixels, "seconds": total,
                   "rss_before_mb": rss_before, "peak_rss_mb": peak_rss_mb(), "gpu_peak_mb": gpu_peak})


def _run(kind: str, cfg: dict) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(kind, cfg, queue))
    proc.start()
    try:
        out = queue.get(timeout=7200)
    except Exception:  # noqa: BLE001 -- queue.Empty or a dead child: either way the child failed
        proc.join()
        raise SystemExit(f"{kind} failed (exit code {proc.exitcode})") from None
    proc.join()
    return out


def _objective(pixels: np.ndarray, cfg: dict) -> float:
    """J = α·J_content + β·J_style of a final image, computed one way for every implementation."""
    import torch

    from visage.style.features import extract, load_feature_net
    from visage.style.losses import content_cost, mean_gram, style_cost
    from visage.style.transfer import _to_tensor, resolve_style_layers

    net = load_feature_net(cfg["network"])
    weights = resolve_style_layers(net, None)
    content, style = (_to_tensor(px) for px in _inputs(cfg))
    with torch.no_grad():
        c = extract(net, content, ["relu4_2"])["relu4_2"]
        s = {k: mean_gram(v) for k, v in extract(net, style, list(weights)).items()}
        g = extract(net, _to_tensor(pixels), [*weights, "relu4_2"])
        return float(cfg["content_weight"] * content_cost(c, g["relu4_2"]) + cfg["style_weight"] * style_cost(s, g, weights))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=512, help="long side in pixels (default 512)")
    parser.add_argument("--steps", type=int, default=20, help="L-BFGS function evaluations (below 20 or a multiple of 20)")
    parser.add_argument("--content", default=str(DEV_DATA / "style/content/tubingen.jpg"))
    parser.add_argument("--style", default=str(DEV_DATA / "style/style/starry_night.jpg"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--network", default="vgg16-hed")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--content-weight", type=float, default=1.0)
    parser.add_argument("--style-weight", type=float, default=None, help="default: visage's default")
    parser.add_argument("--skip-frozen", action="store_true", help="skip the reference with frozen weights")
    parser.add_argument("--out", help="JSON to write, the PNG beside it (default: in the results folder)")
    add_save_flag(parser)
    args = parser.parse_args()

    from visage.style import StyleSettings

    cfg = {"size": args.size, "steps": args.steps, "content": args.content, "style": args.style, "threads": args.threads,
               "network": args.network, "device": args.device, "content_weight": args.content_weight,
               "style_weight": args.style_weight if args.style_weight is not None else StyleSettings().style_weight}
    kinds = ["reference", "visage"] + ([] if args.skip_frozen else ["reference-frozen"])
    load_before = os.getloadavg()
    runs = {}
    for kind in kinds:
        print(f"running {kind} ({args.size} px, {args.steps} steps, {args.threads} threads, {args.device}) ...", flush=True)
        runs[kind] = _run(kind, cfg)
    rows = {}
    for kind, r in runs.items():
        per_step = float(np.median(r["times"][1:] if len(r["times"]) > 1 else r["times"]))
        rows[kind] = {"time_per_step_s": per_step, "final_loss": _objective(r["pixels"], cfg),
                          "loss_last_step": float(r["losses"][-1]), "peak_rss_mb": r["peak_rss_mb"],
                          "rss_before_run_mb": r["rss_before_mb"], "gpu_peak_mb": r["gpu_peak_mb"], "seconds": r["seconds"]}
    v, ref = rows["visage"], rows["reference"]
    ratios = {"speedup_per_step": ref["time_per_step_s"] / v["time_per_step_s"],
                  "final_loss_visage_over_reference": v["final_loss"] / ref["final_loss"],
                  "peak_rss_visage_over_reference": v["peak_rss_mb"] / ref["peak_rss_mb"]}
    if "reference-frozen" in rows:
        ratios["speedup_per_step_vs_frozen_reference"] = rows["reference-frozen"]["time_per_step_s"] / v["time_per_step_s"]
    # What a user waits for: visage's time until its loss first reaches the reference's last loss.
    reached = _time_to_loss(runs["visage"], rows["reference"]["loss_last_step"])
    if reached is not None:
        v["seconds_to_reference_final_loss"] = reached
        ratios["speedup_to_reference_final_loss"] = float(np.sum(runs["reference"]["times"])) / reached
    report = {"settings": {k: cfg[k] for k in cfg}, "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                  "loadavg_before": load_before, "loadavg_after": os.getloadavg()}, "results": rows, "ratios": ratios,
                  "when": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
    out = Path(args.out) if args.out else results_dir(args.save) / "style_bench.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    _montage([runs[k]["pixels"] for k in kinds], out.with_suffix(".png"))
    for kind, row in rows.items():
        print(f"{kind:>17}: {row['time_per_step_s']:.3f} s/step, final loss {row['final_loss']:.5g}, "
              f"peak RSS {row['peak_rss_mb']:.0f} MB")
    for name, value in ratios.items():
        print(f"{name}: {value:.2f}")
    print(f"wrote {out}")


def _time_to_loss(run: dict, target: float) -> float | None:
    """Seconds of optimisation until ``run``'s loss first falls to ``target``; None if it never does."""
    elapsed = np.cumsum(run["times"])
    for seconds, loss in zip(elapsed, run["losses"]):
        if loss <= target:
            return float(seconds)
    return None


def _montage(images: list[np.ndarray], path: Path, height: int = 192) -> None:
    from PIL import Image

    tiles = []
    for px in images:
        img = Image.fromarray(px)
        tiles.append(img.resize((round(img.width * height / img.height), height), Image.LANCZOS))
    sheet = Image.new("RGB", (sum(t.width for t in tiles), height))
    x = 0
    for t in tiles:
        sheet.paste(t, (x, 0))
        x += t.width
    sheet.save(path)


if __name__ == "__main__":
    main()
