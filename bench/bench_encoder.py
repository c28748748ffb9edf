"""Encoder throughput: dlib's own face encoder vs visage's PyTorch port of it, on the same chips.

dlib's ``compute_face_descriptor`` is what face_recognition calls for every face (one chip per
call); given a list it batches 16 chips. The port runs as :class:`DlibTorchEncoder` with
``torch.set_num_threads(2)``. Rounds interleave all contenders, so a busy machine slows each of
them alike; medians over rounds are reported, with wall-clock and CPU time (CPU time is less
disturbed by other processes). OpenMP threads are told to sleep when idle (``OMP_WAIT_POLICY``,
see below) unless the environment says otherwise.

    .venv/bin/python bench/bench_encoder.py [--chips 32] [--rounds 3]

Writes ``bench/results/encoder.json`` with ``--save``, else ``bench/results/local/encoder.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

# Idle OpenMP threads sleep instead of spinning. On a busy machine spinning threads wait for a
# descheduled peer and run 4-8× slower (measured here at load 15 on 2 cores); set before torch
# loads its OpenMP runtime. Pass OMP_WAIT_POLICY=ACTIVE in the environment to measure spinning.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import torch
from tqdm import tqdm

from _results import DEV_DATA, add_save_flag, results_dir

ROOT = Path(__file__).resolve().parents[1]
DEV_FACES = DEV_DATA / "faces"


def collect_chips(count: int) -> tuple[np.ndarray, str]:
    """``count`` aligned 150×150 chips: dev-set faces when present, else the matplotlib sample portrait."""
    import visage
    from visage.encoders.dlib_resnet import CHIP_PADDING, CHIP_SIZE
    from visage.faces.align import dlib_chips
    from visage.media.images import load_image

    if DEV_FACES.is_dir():
        paths = sorted(p for p in DEV_FACES.glob("*/*") if p.is_file())
        source = f"dev set faces ({DEV_FACES})"
    else:
        from matplotlib import cbook

        paths = [Path(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))]
        source = "matplotlib's grace_hopper.jpg (dev set absent)"
    chips = []
    step = max(1, len(paths) // count)
    for path in tqdm(paths[::step], desc="aligning chips", leave=False):
        image = load_image(path)
        faces = visage.detect(image, landmarks68=False)
        if faces:
            chips.append(dlib_chips(image.pixels, faces[:1], CHIP_SIZE, CHIP_PADDING))
        if len(chips) == count:
            break
    stack = np.concatenate(chips)
    if len(stack) < count:  # too few photos: repeat them, mirrored every other time
        reps = [stack if i % 2 == 0 else stack[:, :, ::-1] for i in range(-(-count // len(stack)))]
        stack = np.ascontiguousarray(np.concatenate(reps)[:count])
    return stack, source


def timed(fn) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chips", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    add_save_flag(parser)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    import dlib

    from visage.encoders.dlib_resnet import DlibResNetEncoder
    from visage.encoders.dlib_torch import DlibTorchEncoder
    from visage.nets.dlib_resnet import load_dlib_resnet

    chips, source = collect_chips(args.chips)
    n = len(chips)
    dlib_enc = DlibResNetEncoder()
    torch_enc = DlibTorchEncoder()
    plain = load_dlib_resnet()  # the port before inference tuning (affines kept, NCHW)

    def run_plain(batch: int) -> None:
        with torch.inference_mode():
            for i in range(0, n, batch):
                plain(plain.as_input(chips[i:i + batch]).contiguous())

    def run_torch(batch: int) -> None:
        torch_enc.batch_size = batch
        torch_enc.encode_chips(chips)

    contenders = {
        "dlib batch 1": lambda: [dlib_enc.encode_chips(chips[i:i + 1]) for i in range(n)],
        "dlib batch 16": lambda: dlib_enc.encode_chips(chips),  # dlib batches a list by 16 itself
        "torch batch 1": lambda: run_torch(1),
        "torch batch 16": lambda: run_torch(16),
        "torch batch 32": lambda: run_torch(32),
        "torch untuned batch 16": lambda: run_plain(16),
    }
    reference = dlib_enc.encode_chips(chips)
    ported = torch_enc.encode_chips(chips)
    max_diff = float(np.abs(reference - ported).max())
    dist = lambda e: np.linalg.norm(e[:, None] - e[None], axis=-1)
    max_dist_diff = float(np.abs(dist(reference) - dist(ported)).max())

    for fn in contenders.values():  # warm-up: oneDNN primitives, caches
        fn()
    load_before = os.getloadavg()
    samples: dict[str, list[tuple[float, float]]] = {k: [] for k in contenders}
    for _ in tqdm(range(args.rounds), desc="rounds"):
        for name, fn in contenders.items():
            samples[name].append(timed(fn))
    load_after = os.getloadavg()

    rows = {}
    for name, runs in samples.items():
        wall = float(np.median([w for w, _ in runs]))
        cpu = float(np.median([c for _, c in runs]))
        rows[name] = {"chips_per_s": n / wall, "ms_per_chip_wall": 1000 * wall / n,
                      "cpu_ms_per_chip": 1000 * cpu / n, "rounds_wall_s": [w for w, _ in runs]}
    ratios = {}
    for batch in (1, 16, 32):
        for base in ("dlib batch 1", "dlib batch 16"):
            key = f"torch batch {batch} / {base}"
            ratios[key] = {
                "throughput": rows[f"torch batch {batch}"]["chips_per_s"] / rows[base]["chips_per_s"],
                "cpu": rows[base]["cpu_ms_per_chip"] / rows[f"torch batch {batch}"]["cpu_ms_per_chip"],
            }
    ratios["torch batch 16 / untuned batch 16"] = {
        "throughput": rows["torch batch 16"]["chips_per_s"] / rows["torch untuned batch 16"]["chips_per_s"],
        "cpu": rows["torch untuned batch 16"]["cpu_ms_per_chip"] / rows["torch batch 16"]["cpu_ms_per_chip"],
    }

    print(f"\n{n} chips from {source}; torch threads {args.threads}, OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}; "
          f"load average {load_before[0]:.1f} → {load_after[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"{'contender':26s} {'chips/s':>8s} {'ms/chip':>8s} {'CPU ms/chip':>12s}")
    for name, row in rows.items():
        print(f"{name:26s} {row['chips_per_s']:8.1f} {row['ms_per_chip_wall']:8.1f} {row['cpu_ms_per_chip']:12.1f}")
    print("\nspeed-ups (throughput, CPU time):")
    for key, r in ratios.items():
        print(f"  {key:38s} {r['throughput']:5.2f}×  {r['cpu']:5.2f}×")
    print(f"\nmax |torch − dlib| per element {max_diff:.2e}; max change of a pair distance {max_dist_diff:.2e}")

    result = {
        "chips": n, "chip_source": source, "rounds": args.rounds, "torch_threads": args.threads,
        "omp_wait_policy": os.environ["OMP_WAIT_POLICY"],
        "contenders": rows, "ratios": ratios,
        "agreement": {"max_abs_diff": max_diff, "max_pair_distance_diff": max_dist_diff},
        "machine": {"cpus": os.cpu_count(), "load_average_before": load_before, "load_average_after": load_after,
                    "processor": platform.processor() or platform.machine(), "python": sys.version.split()[0],
                    "torch": torch.__version__, "dlib": dlib.__version__},
    }
    out = results_dir(args.save) / "encoder.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")
    return result


if __name__ == "__main__":
    main()
