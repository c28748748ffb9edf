"""The shipped fast-style model against Gatys optimisation, on photos the model never saw.

For each held-out photo (by identity or source; see the model card, visage/data/styles/NAME.json),
at one size (long side ``--size``, default 256): the fast model's output in one forward pass, and
Gatys' (``visage.style.stylize``, ``--gatys-steps`` L-BFGS steps from the content, visage's default
weights). Both are scored one way: the style loss is :func:`visage.style.style_distance` to the
style image (Gatys' layers relu1_1..relu5_1 weighted 1/n_C², both at the same long side), the
content loss J_content at relu4_2 against the photo; the style loss is also given with the fast
model's own training layers. Prints the ratios (fast / Gatys) and the time per 512-px image of each
(Gatys' 512-px time is its measured time per step × the steps). Writes bench/results/style_fast.json
with --save (else bench/results/local/), and with --docs the side-by-side pictures in docs/images/.

Gatys' outputs are cached in bench/results/local/style_fast_gatys/ (they do not depend on the fast
model), so a rerun after more training only runs the fast model.

    .venv/bin/python bench/bench_style_fast.py --size 256 --gatys-steps 300 --threads 2 --save --docs
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))
from _results import DEV_DATA, LOCAL, add_save_flag, results_dir  # noqa: E402

#: Photos held out of the shipped model's training (their identities and sources were left out).
HELD_OUT = ["style/content/tubingen.jpg", "style/content/golden_gate.jpg", "faces/facerec__obama/obama.jpg",
            "faces/openface__lennon/lennon-1.jpg", "faces/lfw__Colin_Powell/Colin_Powell_0001.jpg",
            "style/content/hoovertowernight.jpg"]


def _content_loss(content: np.ndarray, output: np.ndarray, network: str) -> float:
    import torch

    from visage.style.features import extract, load_feature_net
    from visage.style.losses import content_cost
    from visage.style.transfer import _to_tensor

    net = load_feature_net(network)
    with torch.no_grad():
        a = extract(net, _to_tensor(content), ["relu4_2"])["relu4_2"]
        b = extract(net, _to_tensor(output), ["relu4_2"])["relu4_2"]
        return float(content_cost(a, b))


def _gatys(content: np.ndarray, style: str, name: str, size: int, steps: int, network: str, threads: int) -> dict:
    """Gatys' output for ``content`` (cached by name, size and steps) and the seconds it took."""
    from PIL import Image

    from visage.style import StyleSettings, stylize

    cache = LOCAL / "style_fast_gatys"
    cache.mkdir(parents=True, exist_ok=True)
    png, meta = cache / f"{name}_{size}_{steps}.png", cache / f"{name}_{size}_{steps}.json"
    if png.is_file() and meta.is_file():
        with Image.open(png) as img:
            return dict(pixels=np.asarray(img.convert("RGB")), **json.loads(meta.read_text()))
    settings = StyleSettings(size=size, steps=steps, coarse_size=size, network=network, threads=threads)
    started = time.perf_counter()
    result = stylize(content, style, settings, progress=False)
    seconds = time.perf_counter() - started
    Image.fromarray(result.pixels).save(png)
    info = {"seconds": seconds, "threads": threads, "steps": steps, "seconds_per_step": seconds / steps}
    meta.write_text(json.dumps(info))
    return dict(pixels=result.pixels, **info)


def _ms_per_image(fn, repeats: int = 3) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return 1000.0 * float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="starry", help="a shipped style name or a model file (default starry)")
    parser.add_argument("--style", default=None, help="the style image (default: the model card's, in the dev data)")
    parser.add_argument("--size", type=int, default=256, help="long side of every output scored (default 256)")
    parser.add_argument("--gatys-steps", type=int, default=300)
    parser.add_argument("--gatys-images", type=int, default=6,
                        help="how many of the held-out photos Gatys runs on (default 6: all of them)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--timing-steps", type=int, default=10, help="Gatys steps timed at 512 px (default 10)")
    parser.add_argument("--network", default="vgg16-hed")
    parser.add_argument("--docs", action="store_true", help="write the side-by-side pictures to docs/images/")
    add_save_flag(parser)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from visage.media.images import load_image
    from visage.style import StyleSettings, style_distance, stylize
    from visage.style.fast import load_style_model, resolve_style_model
    from visage.style.transfer import _resize_long

    if not DEV_DATA.is_dir():
        raise SystemExit(f"the dev data is not at {DEV_DATA} (set VISAGE_DEV_DATA)")
    model = load_style_model(args.model)
    card_file = resolve_style_model(args.model).with_suffix(".json")
    card = json.loads(card_file.read_text()) if card_file.is_file() else {}
    style = args.style or str(DEV_DATA / card.get("style_image", {}).get("dev_data_path", "style/style/starry_night.jpg"))
    fast_layers = model.settings.style_layers

    rows = []
    for i, rel in enumerate(HELD_OUT):
        name = Path(rel).stem
        content = _resize_long(load_image(DEV_DATA / rel).pixels, args.size)
        fast = model.apply_pixels(content)
        row = {"image": rel, "size": list(content.shape[1::-1]),
                   "unstyled": {"style_loss": style_distance(content, style, size=args.size, network=args.network),
                                 "style_loss_fast_layers": style_distance(content, style, size=args.size,
                                                                       network=args.network, style_layers=fast_layers)},
                   "fast": {"style_loss": style_distance(fast, style, size=args.size, network=args.network),
                             "style_loss_fast_layers": style_distance(fast, style, size=args.size, network=args.network,
                                                                   style_layers=fast_layers),
                             "content_loss": _content_loss(content, fast, args.network)}}
        row["fast"]["style_over_unstyled"] = row["fast"]["style_loss"] / row["unstyled"]["style_loss"]
        if i < args.gatys_images:
            print(f"Gatys {args.gatys_steps} steps on {rel} at {args.size} px ...", flush=True)
            g = _gatys(content, style, name, args.size, args.gatys_steps, args.network, args.threads)
            row["gatys"] = {"style_loss": style_distance(g["pixels"], style, size=args.size, network=args.network),
                                "style_loss_fast_layers": style_distance(g["pixels"], style, size=args.size,
                                                                      network=args.network, style_layers=fast_layers),
                                "content_loss": _content_loss(content, g["pixels"], args.network),
                                "seconds": g["seconds"], "threads": g["threads"]}
            row["ratios"] = {f"{k}_fast_over_gatys": row["fast"][k] / row["gatys"][k]
                             for k in ("style_loss", "style_loss_fast_layers", "content_loss")}
            if args.docs:
                _montage([content, fast, g["pixels"]], ROOT / "docs" / "images" / f"style_fast_{name}.jpg")
        rows.append(row)
        print(f"{rel}: style loss unstyled {row['unstyled']['style_loss']:.4g}, fast {row['fast']['style_loss']:.4g}"
              + (f", Gatys {row['gatys']['style_loss']:.4g}; content loss fast {row['fast']['content_loss']:.4g}, "
                 f"Gatys {row['gatys']['content_loss']:.4g}" if "gatys" in row else ""), flush=True)

    compared = [r for r in rows if "ratios" in r]
    summary = {k: float(np.exp(np.mean([np.log(r["ratios"][k]) for r in compared])))
               for k in (compared[0]["ratios"] if compared else [])}
    summary["fast_style_over_unstyled"] = float(np.exp(np.mean([np.log(r["fast"]["style_over_unstyled"]) for r in rows])))

    # Time per 512-px image on this CPU: the fast model's forward pass; Gatys' time per step × steps.
    photo = _resize_long(load_image(DEV_DATA / HELD_OUT[0]).pixels, 512)
    fast_ms = _ms_per_image(lambda: model.apply_pixels(photo))
    started = time.perf_counter()
    stylize(photo, style, StyleSettings(size=512, steps=args.timing_steps, coarse_size=512, network=args.network,
                                        threads=args.threads), progress=False)
    gatys_step_s = (time.perf_counter() - started) / args.timing_steps
    timing = {"image": HELD_OUT[0], "size": list(photo.shape[1::-1]), "threads": args.threads, "fast_ms": fast_ms,
                  "gatys_seconds_per_step": gatys_step_s, "gatys_steps": args.gatys_steps,
                  "gatys_ms": 1000.0 * gatys_step_s * args.gatys_steps}
    timing["speedup"] = timing["gatys_ms"] / fast_ms

    report = {"model": args.model, "style": style, "size": args.size, "gatys_steps": args.gatys_steps,
              "network": args.network,
                  "held_out": rows, "geometric_mean_ratios": summary, "timing_512": timing,
                  "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "loadavg": os.getloadavg()},
                  "when": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
    out = results_dir(args.save) / "style_fast.json"
    out.write_text(json.dumps(report, indent=2))
    for k, v in summary.items():
        print(f"{k}: {v:.3f}")
    print(f"512 px: fast {fast_ms:.0f} ms, Gatys {args.gatys_steps} steps {timing['gatys_ms'] / 1000:.0f} s "
          f"({gatys_step_s:.2f} s/step, {args.threads} threads): {timing['speedup']:.0f}× faster")
    print(f"wrote {out}")


def _montage(images: list[np.ndarray], path: Path, height: int = 256) -> None:
    """content | fast | Gatys side by side, as a small JPEG."""
    from PIL import Image

    tiles = [Image.fromarray(px) for px in images]
    tiles = [t.resize((round(t.width * height / t.height), height), Image.LANCZOS) for t in tiles]
    sheet = Image.new("RGB", (sum(t.width for t in tiles) + 4 * (len(tiles) - 1), height), "white")
    x = 0
    for t in tiles:
        sheet.paste(t, (x, 0))
        x += t.width + 4
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path, "JPEG", quality=85)


if __name__ == "__main__":
    main()
