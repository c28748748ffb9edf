"""Top-patch search: visage's one hooked, batched pass vs a naive loop that runs VGG16 once per layer.

The folder holds ``--images`` (default 1,000) random crops of the dev-set photos, 64–112 px each,
made once into a temporary folder. Both contenders find the 9 best units × 9 best patches of
conv1_2, conv3_3 and conv5_3 on every image resized to ``--size`` px, and cut the patches:

- visage: :func:`visage.introspect.top_patches`: forward hooks on all three layers, batches of
  16, a bounded top-k table per unit, one pass;
- naive: for each layer, for each image, ``VGGFeatures.extract(x, [layer])`` (one image at a time,
  stopping at that layer), every unit's maximum per image kept in a list, sorted at the end.

Each run is a fresh subprocess, so its peak resident memory (VmHWM) is its own; the memory held
above the process's state after loading the model is reported too. Both also run on a quarter
of the folder, to show how memory grows with the number of images.

    .venv/bin/python bench/bench_introspect.py [--images 1000] [--size 64] [--threads 1]

Writes ``bench/results/introspect.json`` with ``--save``, else ``bench/results/local/introspect.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # idle OpenMP threads sleep: fairer on a busy machine

from _results import DEV_DATA, add_save_flag, results_dir

LAYERS = ["conv1_2", "conv3_3", "conv5_3"]


def make_folder(folder: Path, count: int, seed: int = 0) -> str:
    """``count`` JPEG crops of 64–112 px from the dev-set photos (or generated images without them)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    sources = sorted((DEV_DATA / "style" / "content").glob("*.jpg")) + sorted((DEV_DATA / "faces").glob("*/*"))
    photos = []
    for path in sources:
        from visage.media.images import load_image

        pixels = load_image(path).pixels
        scale = 256 / min(pixels.shape[:2])
        photos.append(Image.fromarray(pixels).resize((max(1, round(pixels.shape[1] * scale)),
                                                      max(1, round(pixels.shape[0] * scale)))))
    for k in range(count):
        side = int(rng.integers(64, 113))
        if photos:
            photo = photos[int(rng.integers(len(photos)))]
            crop = int(rng.integers(side, min(photo.size) + 1))
            left, top = int(rng.integers(0, photo.size[0] - crop + 1)), int(rng.integers(0, photo.size[1] - crop + 1))
            image = photo.crop((left, top, left + crop, top + crop)).resize((side, side))
        else:
            image = Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8))
        image.save(folder / f"{k:05d}.jpg", quality=90)
    return f"{len(sources)} dev-set photos" if photos else "generated noise (dev set missing)"


def memory() -> dict[str, int]:
    """Current and peak resident memory of this process, in bytes (Linux /proc)."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) * 1024
    return fields


def run_visage(target, files: list[str], size: int) -> None:
    from visage.introspect import top_patches

    top_patches(target, LAYERS, files, units=9, per_unit=9, image_size=size, batch_size=16, progress=False)


def run_naive(target, files: list[str], size: int) -> None:
    import numpy as np
    import torch

    from visage.introspect.images import square_resize
    from visage.introspect.patches import crop
    from visage.media.images import load_image

    net = target.net
    fields = {name: target.layer(name).field for name in LAYERS}
    for layer in LAYERS:
        seen = []  # (value, image, unit, row, col) for every unit of every image: grows with the folder
        for index, path in enumerate(files):
            pixels = square_resize(load_image(path).pixels, size)
            x = torch.from_numpy(pixels).permute(2, 0, 1)[None].float() / 255
            with torch.no_grad():
                out = net.extract(x, [layer])[layer][0]
            best, where = out.flatten(1).max(1)
            width = out.shape[2]
            for unit in range(out.shape[0]):
                seen.append((float(best[unit]), index, unit, int(where[unit]) // width, int(where[unit]) % width))
        per_unit: dict[int, list] = {}
        for entry in sorted(seen, reverse=True):
            if len(per_unit.setdefault(entry[2], [])) < 9:
                per_unit[entry[2]].append(entry)
        top_units = sorted(per_unit, key=lambda u: -np.mean([e[0] for e in per_unit[u]]))[:9]
        for unit in top_units:
            for _, index, _, row, col in per_unit[unit]:
                crop(square_resize(load_image(files[index]).pixels, size), fields[layer].box(row, col))


def child(method: str, folder: str, count: int, size: int, threads: int) -> None:
    """Runs in the subprocess: set up, run one contender, print its numbers as JSON."""
    import torch

    torch.set_num_threads(threads)
    files = sorted(str(p) for p in Path(folder).glob("*.jpg"))[:count]
    from visage.introspect.targets import resolve_model

    target = resolve_model("vgg16")
    target.layers()  # model and graph loaded before the baseline
    base = memory()["VmRSS"]
    start = time.perf_counter()
    cpu = time.process_time()
    (run_visage if method == "visage" else run_naive)(target, files, size)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    mem = memory()
    print(json.dumps({"method": method, "images": len(files), "seconds": seconds, "cpu_seconds": cpu,
                      "images_per_second": len(files) / seconds, "peak_rss_mb": mem["VmHWM"] / 1e6,
                      "peak_above_model_mb": (mem["VmHWM"] - base) / 1e6}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--size", type=int, default=64, help="side the network sees (default 64)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per contender (default 1)")
    parser.add_argument("--child", nargs=3, metavar=("METHOD", "FOLDER", "COUNT"), help=argparse.SUPPRESS)
    add_save_flag(parser)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], int(args.child[2]), args.size, args.threads)
        return
    with tempfile.TemporaryDirectory() as tmp:
        source = make_folder(Path(tmp), args.images)
        runs = []
        plan = [("visage", args.images // 4), ("visage", args.images), ("naive", args.images // 4),
                ("naive", args.images)]
        for method, count in plan:
            print(f"{method} on {count} images ...", flush=True)
            out = subprocess.run([sys.executable, __file__, "--size", str(args.size), "--threads", str(args.threads),
                                  "--child", method, tmp, str(count)], capture_output=True, text=True, check=True)
            runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
            print("  ", runs[-1], flush=True)
    visage_full, naive = runs[1], runs[3]
    ratios = {
        "speedup_images_per_second": visage_full["images_per_second"] / naive["images_per_second"],
        "speedup_cpu_seconds": naive["cpu_seconds"] / visage_full["cpu_seconds"],
        "naive_over_visage_memory_above_model": naive["peak_above_model_mb"] / max(visage_full["peak_above_model_mb"], 1e-3),
        "visage_memory_growth_quarter_to_full_mb": visage_full["peak_above_model_mb"] - runs[0]["peak_above_model_mb"],
        "naive_memory_growth_quarter_to_full_mb": naive["peak_above_model_mb"] - runs[2]["peak_above_model_mb"],
    }
    for key, value in ratios.items():
        print(f"{key}: {value:.2f}")
    result = {"layers": LAYERS, "size": args.size, "threads": args.threads, "images_from": source,
              "machine": f"{platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}",
              "runs": runs, "ratios": ratios}
    out = results_dir(args.save) / "introspect.json"
    out.write_text(json.dumps(result, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
