"""FaceNet (PyTorch port) vs dlib's encoder on the dev pairs, and the port vs cv2.dnn on the same chips.

    .venv/bin/python bench/bench_facenet.py [--data ../shared/data] [--limit N] [--port-chips 32]

For every distinct photo in pairs.tsv, the largest face is detected and encoded by each pipeline,
one after the other on the same photo so that load on the shared machine hits all of them alike:

- ``facenet``: MTCNN detection, MTCNN box + margin 32 crop to 160 px (FaceNet's own alignment);
- ``facenet-similarity``: the same faces, chips from a 5-landmark similarity transform instead;
- ``facenet-hog``: dlib HOG detection, its box refined by MTCNN's O-Net, box alignment;
- ``dlib``: dlib HOG detection, 5-point chips, dlib's ResNet (what face_recognition runs).

Reports per pipeline the LFW-protocol accuracy (threshold chosen on 9 folds, scored on the 10th),
ROC AUC, the fitted threshold, and the time per face of detection, alignment and encoding. Then
the port itself: time per chip of the PyTorch module (batch 1 and batch 16) and of OpenCV's dnn
running the original TensorFlow graph, and their largest disagreement over all chips.

Writes ``bench/results/facenet.json`` and ``bench/results/facenet_chips.png`` with ``--save``,
else the same names under ``bench/results/local/``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from dataclasses import asdict
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image as PILImage
from sklearn.metrics import roc_auc_score
from tqdm import tqdm

import visage
from _results import DEV_DATA, add_save_flag, results_dir  # bench/_results.py
from visage.encoders import get_encoder
from visage.encoders.facenet import facenet_chips
from visage.evaluation.pairs import load_pairs, pair_distances
from visage.evaluation.verification import cross_validated_accuracy, fit_calibration
from visage.media.images import load_image
from visage.models import model_path

#: pipeline → (detector, encoder, FaceNet alignment or None)
PIPELINES = {
    "facenet": ("mtcnn", "facenet", "box"),
    "facenet-similarity": ("mtcnn", "facenet", "similarity"),
    "facenet-hog": ("hog", "facenet", "box"),
    "dlib": ("hog", "dlib", None),
}


class Clock:
    """Accumulates wall-clock and CPU seconds (CPU time is less disturbed by other processes)."""

    def __init__(self):
        self.wall = self.cpu = 0.0

    def __enter__(self):
        self._wall, self._cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall += time.perf_counter() - self._wall
        self.cpu += time.process_time() - self._cpu


def encode_all(paths: list[Path], batch: int = 16) -> tuple[dict, dict, np.ndarray]:
    """Encodings per pipeline and path, clocks per pipeline and stage, and the ``facenet`` chips.

    Detection and alignment run photo by photo, every pipeline on the same photo in turn; then each
    pipeline encodes its chips in batches of ``batch``, as ``visage.encode_batch`` does.
    """
    encoders = {"facenet": get_encoder("facenet"), "dlib": get_encoder("dlib")}
    clocks = {name: {stage: Clock() for stage in ("detect", "align", "encode")} for name in PIPELINES}
    chips: dict[str, dict[Path, np.ndarray]] = {name: {} for name in PIPELINES}
    for path in tqdm(paths, desc="detect + align", unit="photo"):
        image = load_image(path)
        found: dict[str, list] = {}
        for name, (detector, encoder_name, alignment) in PIPELINES.items():
            if detector not in found:  # pipelines sharing a detector share its result; each is charged its time
                clock = Clock()
                with clock:
                    found[detector] = visage.detect(image, detector=detector, landmarks68=False)[:1]
                found[detector + "/clock"] = clock
            clocks[name]["detect"].wall += found[detector + "/clock"].wall
            clocks[name]["detect"].cpu += found[detector + "/clock"].cpu
            faces = found[detector]
            if not faces:
                continue
            with clocks[name]["align"]:
                if alignment is None:
                    chips[name][path] = encoders[encoder_name].chips(image, faces)[0]
                else:
                    chips[name][path] = facenet_chips(image.pixels, faces, alignment=alignment)[0]
    encodings: dict[str, dict[Path, np.ndarray | None]] = {}
    for name, (_, encoder_name, _) in PIPELINES.items():
        keys = list(chips[name])
        stack = np.stack([chips[name][k] for k in keys])
        vectors = []
        for start in tqdm(range(0, len(stack), batch), desc=f"encode {name}", unit="batch", leave=False):
            with clocks[name]["encode"]:
                vectors.append(encoders[encoder_name].encode_chips(stack[start:start + batch]))
        encodings[name] = dict.fromkeys(paths) | dict(zip(keys, np.concatenate(vectors)))
        clocks[name]["faces"] = len(keys)
    facenet = np.stack(list(chips["facenet"].values()))
    return encodings, clocks, facenet


def port_check(chips: np.ndarray) -> dict:
    """PyTorch module vs cv2.dnn on the original graph, chip by chip in turn: time and largest difference."""
    net = get_encoder("facenet")
    reference = cv2.dnn.readNetFromTensorflow(str(model_path("facenet_graph")))
    clocks = {"torch_batch1": Clock(), "cv2_dnn_batch1": Clock(), "torch_batch16": Clock()}
    ours, theirs = [], []
    for chip in tqdm(chips, desc="torch vs cv2.dnn", unit="chip", leave=False):
        blob = np.ascontiguousarray(((chip.astype(np.float32) - 127.5) / 128.0).transpose(2, 0, 1)[None])
        with clocks["cv2_dnn_batch1"]:
            reference.setInput(blob)
            theirs.append(reference.forward().reshape(-1))
        with clocks["torch_batch1"]:
            ours.append(net.encode_chips(chip[None])[0])
    with clocks["torch_batch16"]:
        batched = np.concatenate([net.encode_chips(chips[i:i + 16]) for i in range(0, len(chips), 16)])
    theirs = np.stack(theirs)
    n = len(chips)
    return {
        "chips": int(n),
        "max_abs_diff": float(max(np.abs(np.stack(ours) - theirs).max(), np.abs(batched - theirs).max())),
        "ms_per_chip_wall": {k: 1000 * c.wall / n for k, c in clocks.items()},
        "ms_per_chip_cpu": {k: 1000 * c.cpu / n for k, c in clocks.items()},
    }


def chips_picture(paths: list[Path], out: Path, count: int = 8) -> None:
    """Box-aligned chips over similarity-aligned chips of the same faces, one column per face."""
    rows = {"box": [], "similarity": []}
    for path in paths[:: max(1, len(paths) // count)][:count]:
        image = load_image(path)
        faces = visage.detect(image, detector="mtcnn", landmarks68=False)[:1]
        for alignment in rows:
            rows[alignment].append(facenet_chips(image.pixels, faces, alignment=alignment)[0] if faces
                                   else np.zeros((160, 160, 3), np.uint8))
    grid = np.concatenate([np.concatenate(r, axis=1) for r in rows.values()], axis=0)
    PILImage.fromarray(grid).save(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEV_DATA)
    parser.add_argument("--limit", type=int, default=0, help="use only the first N distinct photos")
    parser.add_argument("--port-chips", type=int, default=32, help="chips timed through torch and cv2.dnn")
    parser.add_argument("--threads", type=int, default=1,
                        help="threads for torch and OpenCV (default 1: on a shared machine, two threads that "
                             "wait on each other cost far more than they gain)")
    add_save_flag(parser)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)

    pairs = load_pairs(args.data / "pairs.tsv")
    paths = sorted({p.a for p in pairs} | {p.b for p in pairs})
    if args.limit:
        paths = paths[:args.limit]
        pairs = [p for p in pairs if p.a in set(paths) and p.b in set(paths)]
    visage.encode(paths[0], encoder="facenet", detector="mtcnn")  # load every model before timing
    visage.encode(paths[0], encoder="dlib", detector="hog")

    encodings, clocks, facenet_chip_stack = encode_all(paths)
    report = {"pairs": len(pairs), "photos": len(paths), "machine": platform.processor() or platform.machine(),
              "torch_threads": torch.get_num_threads(), "pipelines": {}}
    print(f"{len(pairs)} pairs over {len(paths)} photos")
    print(f"{'pipeline':<20}{'pairs':>6}{'10-fold acc':>12}{'AUC':>8}{'threshold':>10}"
          f"{'detect ms':>10}{'align ms':>9}{'encode ms':>10}  (per face, wall clock)")
    for name in PIPELINES:
        distances, same = pair_distances(pairs, encodings[name])
        c = clocks[name]
        faces = max(c["faces"], 1)
        row = {
            "detector": PIPELINES[name][0], "encoder": get_encoder(PIPELINES[name][1]).name,
            "alignment": PIPELINES[name][2] or "dlib 5-point",
            "pairs_scored": int(len(distances)),
            "accuracy_10fold": cross_validated_accuracy(distances, same),
            "auc": float(roc_auc_score(same, -distances)),
            "calibration": asdict(fit_calibration(distances, same, get_encoder(PIPELINES[name][1]).name,
                                                  source=f"{len(distances)} pairs of pairs.tsv, {name} pipeline")),
            "mean_distance_same": float(distances[same].mean()),
            "mean_distance_different": float(distances[~same].mean()),
            "faces": c["faces"],
            "ms_per_face_wall": {k: 1000 * c[k].wall / faces for k in ("detect", "align", "encode")},
            "ms_per_face_cpu": {k: 1000 * c[k].cpu / faces for k in ("detect", "align", "encode")},
        }
        report["pipelines"][name] = row
        ms = row["ms_per_face_wall"]
        print(f"{name:<20}{row['pairs_scored']:>6}{row['accuracy_10fold']:>12.4f}{row['auc']:>8.4f}"
              f"{row['calibration']['threshold']:>10.3f}{ms['detect']:>10.0f}{ms['align']:>9.0f}{ms['encode']:>10.0f}")
    fn, dl = report["pipelines"]["facenet"], report["pipelines"]["dlib"]
    report["ratios"] = {
        "facenet_vs_dlib_error_rate": (1 - fn["accuracy_10fold"]) / max(1 - dl["accuracy_10fold"], 1e-9),
        "facenet_vs_dlib_encode_time_wall": fn["ms_per_face_wall"]["encode"] / dl["ms_per_face_wall"]["encode"],
        "facenet_vs_dlib_encode_time_cpu": fn["ms_per_face_cpu"]["encode"] / dl["ms_per_face_cpu"]["encode"],
    }
    print(f"facenet/dlib: error rate ×{report['ratios']['facenet_vs_dlib_error_rate']:.2f}, "
          f"encode time ×{report['ratios']['facenet_vs_dlib_encode_time_wall']:.2f} (wall), "
          f"×{report['ratios']['facenet_vs_dlib_encode_time_cpu']:.2f} (CPU)")

    port = port_check(facenet_chip_stack[:args.port_chips])
    report["port_vs_cv2_dnn"] = port
    print(f"port vs cv2.dnn on {port['chips']} chips: max |diff| {port['max_abs_diff']:.2e}")
    for kind in ("wall", "cpu"):
        ms = port[f"ms_per_chip_{kind}"]
        print(f"  ms per chip ({kind}): torch {ms['torch_batch1']:.0f} (batch 1), {ms['torch_batch16']:.0f} "
              f"(batch 16), cv2.dnn {ms['cv2_dnn_batch1']:.0f} (batch 1); torch/cv2.dnn batch 1 "
              f"×{ms['torch_batch1'] / ms['cv2_dnn_batch1']:.2f}")

    results = results_dir(args.save)
    chips_picture(paths, results / "facenet_chips.png")
    (results / "facenet.json").write_text(json.dumps(report, indent=2))
    print(f"wrote {results / 'facenet.json'} and {results / 'facenet_chips.png'}")


if __name__ == "__main__":
    main()
