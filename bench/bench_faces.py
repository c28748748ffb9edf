"""visage vs the face_recognition library, side by side on the same photos, in one run.

    .venv/bin/python bench/bench_faces.py [--data ../shared/data] [--encoder dlib+facenet]

Measures (and writes to bench/results/faces.json with --save, else bench/results/local/faces.json):
- throughput of detect + encode over a folder of photos, faces per second, each library timed on
  the same image one after the other so that load on the machine hits both alike;
- verification accuracy on pairs.tsv at each library's default threshold, and at the best
  threshold under 10-fold cross-validation;
- seconds from a 14-megapixel JPEG file to the encodings of its faces.

Needs face_recognition (`pip install --no-deps face_recognition==1.3.0 "setuptools<81"`).
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from PIL import Image as PILImage
from tqdm import tqdm

import visage
from _results import DEV_DATA, add_save_flag, results_dir  # bench/_results.py
from visage.encoders import DEFAULT_ENCODER, get_encoder
from visage.evaluation.pairs import load_pairs, pair_distances
from visage.evaluation.verification import accuracy, cross_validated_accuracy, default_calibration

FACE_RECOGNITION_TOLERANCE = 0.6  # face_recognition.compare_faces' default
#: visage encoders measured beside the one benchmarked: each alone, for comparison with the fusion.
COMPARED = ["dlib-torch", "facenet"]


def _face_recognition():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import face_recognition
    return face_recognition


def throughput(paths: list[Path], encoder: str, batch: int) -> dict:
    """Detect + encode every photo with both libraries; visage batches `batch` photos per call."""
    fr = _face_recognition()
    visage.encode(paths[0], encoder=encoder)  # load models before timing, for both
    fr.face_encodings(fr.load_image_file(paths[0]))
    t_visage = t_fr = 0.0
    n_visage = n_fr = 0
    for start in tqdm(range(0, len(paths), batch), desc="throughput", unit="batch"):
        chunk = paths[start:start + batch]
        t = time.perf_counter()
        n_visage += sum(len(found) for found in visage.encode_batch(chunk, encoder=encoder))
        t_visage += time.perf_counter() - t
        t = time.perf_counter()
        for path in chunk:
            image = fr.load_image_file(path)
            n_fr += len(fr.face_encodings(image, fr.face_locations(image)))
        t_fr += time.perf_counter() - t
    return {"photos": len(paths), "visage_faces": n_visage, "face_recognition_faces": n_fr,
            "visage_seconds": round(t_visage, 2), "face_recognition_seconds": round(t_fr, 2),
            "visage_faces_per_second": round(n_visage / t_visage, 2),
            "face_recognition_faces_per_second": round(n_fr / t_fr, 2),
            "speedup": round((n_visage / t_visage) / (n_fr / t_fr), 2)}


def verification(pairs_tsv: Path, encoders: list[str]) -> dict:
    """Accuracy on labelled pairs at each library's default threshold and under 10-fold CV.

    visage's default thresholds are fitted on another set (scripts/fit_calibration.py), so both
    figures are held out; the 10-fold CV one chooses each fold's threshold on the other nine.
    """
    fr = _face_recognition()
    pairs = load_pairs(pairs_tsv)
    paths = sorted({p.a for p in pairs} | {p.b for p in pairs})
    tables: dict[str, dict[Path, np.ndarray | None]] = {name: {} for name in [*encoders, "face_recognition"]}
    for path in tqdm(paths, desc="pairs", unit="photo"):
        faces = visage.detect(path, landmarks68=False)[:1]
        for name in encoders:
            found = visage.encode(path, faces=faces, encoder=name)
            tables[name][path] = found[0].encoding if found else None
        image = fr.load_image_file(path)
        # The largest face, as visage takes: fairer than face_recognition's habitual first face.
        boxes = sorted(fr.face_locations(image), key=lambda b: (b[2] - b[0]) * (b[1] - b[3]), reverse=True)
        tables["face_recognition"][path] = fr.face_encodings(image, boxes[:1])[0] if boxes else None
    out: dict = {"pairs": len(pairs)}
    for name, table in tables.items():
        default = (FACE_RECOGNITION_TOLERANCE if name == "face_recognition"
                   else default_calibration(get_encoder(name).name).threshold)
        d, same = pair_distances(pairs, table)
        # A pair whose photo has no face found counts as an error for that library.
        missed = len(pairs) - len(same)
        errors_default = len(pairs) - round(accuracy(d, same, default) * len(same))
        errors_cv = len(pairs) - round(cross_validated_accuracy(d, same) * len(same))
        out[name] = {"threshold": default, "pairs_without_face": missed,
                     "errors_at_default": errors_default, "errors_10fold_cv": errors_cv,
                     "accuracy_at_default": round(1 - errors_default / len(pairs), 4),
                     "accuracy_10fold_cv": round(1 - errors_cv / len(pairs), 4)}
    peer_errors = max(out["face_recognition"]["errors_at_default"], 1)
    out["error_ratio_at_default"] = {name: round(out[name]["errors_at_default"] / peer_errors, 3) for name in encoders}
    return out


def large_photo(photo: Path, encoder: str, megapixels: float = 14.0) -> dict:
    """Seconds from a JPEG file of ``megapixels`` to the encodings of its faces, for both libraries."""
    fr = _face_recognition()
    small = PILImage.open(photo).convert("RGB")
    scale = (megapixels * 1e6 / (small.width * small.height)) ** 0.5
    big = small.resize((round(small.width * scale), round(small.height * scale)), PILImage.BICUBIC)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "large.jpg"
        big.save(path, quality=92)
        t = time.perf_counter()
        ours = visage.encode(path, encoder=encoder)
        t_visage = time.perf_counter() - t
        t = time.perf_counter()
        image = fr.load_image_file(path)
        theirs = fr.face_encodings(image, fr.face_locations(image))
        t_fr = time.perf_counter() - t
    return {"photo": photo.name, "width": big.width, "height": big.height,
            "visage_seconds": round(t_visage, 3), "visage_faces": len(ours),
            "face_recognition_seconds": round(t_fr, 3), "face_recognition_faces": len(theirs),
            "speedup": round(t_fr / t_visage, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEV_DATA)
    parser.add_argument("--encoder", default=DEFAULT_ENCODER)
    parser.add_argument("--batch", type=int, default=8, help="photos per visage.encode_batch call")
    parser.add_argument("--out", type=Path, help="JSON to write (default: faces.json in the results folder)")
    add_save_flag(parser)
    args = parser.parse_args()
    if args.out is None:
        args.out = results_dir(args.save) / "faces.json"
    photos = sorted(p for p in (args.data / "faces").glob("*/*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    results = {
        "machine": {"cpus": __import__("os").cpu_count(), "python": platform.python_version()},
        "encoder": args.encoder,
        "throughput": throughput(photos, args.encoder, args.batch),
        "verification": verification(args.data / "pairs.tsv", list(dict.fromkeys([args.encoder, *COMPARED]))),
        "large_photo": large_photo(args.data / "detection" / "facerec_obama_and_biden.jpg", args.encoder),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    t, v, big = results["throughput"], results["verification"], results["large_photo"]
    print(f"throughput  visage {t['visage_faces_per_second']} faces/s, face_recognition "
          f"{t['face_recognition_faces_per_second']} faces/s: {t['speedup']}x")
    for name, r in v.items():
        if isinstance(r, dict) and "threshold" in r:
            print(f"accuracy    {name:<16} {r['accuracy_at_default']:.4f} ({r['errors_at_default']} errors) at "
                  f"{r['threshold']}, {r['accuracy_10fold_cv']:.4f} ({r['errors_10fold_cv']}) 10-fold CV "
                  f"({r['pairs_without_face']} pairs without a face)")
    print(f"errors      visage / face_recognition at defaults: {v['error_ratio_at_default']}")
    print(f"14 MP photo visage {big['visage_seconds']} s ({big['visage_faces']} faces), face_recognition "
          f"{big['face_recognition_seconds']} s ({big['face_recognition_faces']} faces): {big['speedup']}x")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
