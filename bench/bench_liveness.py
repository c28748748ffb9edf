#!/usr/bin/env python
"""Liveness benchmark: real attack stills and simulated attacks, reported separately.

Side by side in one run:

* **visage** — the shipped passive model (all cues), at its documented operating point;
* **peers** — no installable package ships a print/replay detector (see DESIGN.md), so the
  nearest peers are (a) the published decisions of Silent-Face (MiniFASNet), whose outputs on the
  same four stills are in ../shared/data/spoof/reference_outputs, and (b) two classic single-cue
  detectors fitted here on visage's training features: colour-texture LBP alone (Boulkenafet et
  al.'s cue) and blur alone (the common "variance of the Laplacian" heuristic).

Parts:
1. real stills in ../shared/data/spoof (1 bona fide, 1 print, 2 replays): far too few for rates
   to mean much; never used for training or tuning;
2. simulated attacks made with a fresh seed from the identities held out of training
   (TEST_HOLDOUT in scripts/train_liveness.py);
3. active checks: planarity on rendered clips of flat photos turned in perspective, and on a real
   clip; blinks on the real clip (no ground truth there: counts are reported, not scored).

Writes bench/results/liveness.json and DET plots bench/results/liveness_det_{real,simulated}.png.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "scripts"))

import visage  # noqa: E402
from visage.imageio import load_image  # noqa: E402
from visage.liveness import THRESHOLD, active, check, read_frames  # noqa: E402
from visage.liveness.features import face_features, feature_names  # noqa: E402
from visage.liveness.metrics import pad_metrics, plot_det  # noqa: E402
from visage.liveness.simulate import simulate_attack, simulate_live_capture, simulate_moving_print  # noqa: E402

DATA = Path(os.environ.get("VISAGE_DEV_DATA", ROOT.parent / "shared" / "data"))
RESULTS = ROOT / "bench" / "results"
#: Silent-Face's published decisions on the same stills (reference_outputs/*_result.jpg, MANIFEST.tsv).
SILENT_FACE = {"silentface_image_T1.jpg": "live", "silentface_image_F1.jpg": "attack",
               "silentface_image_F2.jpg": "attack", "hyperfas_fake_screen.png": "attack"}


class SingleCue:
    """A logistic regression on one cue group, fitted on visage's cached training features."""

    def __init__(self, prefix: str, data: dict):
        from sklearn.linear_model import LogisticRegression
        from train_liveness import TEST_HOLDOUT, eer_threshold, out_of_fold

        self.columns = [i for i, n in enumerate(feature_names()) if n.startswith(prefix)]
        keep = ~np.isin(data["group"], TEST_HOLDOUT)
        X, labels, groups = data["X"][keep][:, self.columns], data["label"][keep], data["group"][keep]
        live = (labels == "real").astype(int)
        self.mean, self.scale = X.mean(0), X.std(0) + 1e-9
        self.clf = LogisticRegression(C=0.3, max_iter=5000, class_weight="balanced").fit(
            (X - self.mean) / self.scale, live)
        oof = out_of_fold(data["X"][keep][:, self.columns], live, groups, 0.3)
        self.threshold = eer_threshold(oof, labels)

    def score(self, pixels: np.ndarray) -> float | None:
        faces = visage.detect(pixels, landmarks68=False)
        if not faces:
            return None
        x = face_features(pixels, faces[0].box)[self.columns]
        logit = float(self.clf.decision_function(((x - self.mean) / self.scale)[None])[0]) - self.threshold
        return 1.0 / (1.0 + math.exp(-logit))


def real_stills(peers: dict) -> dict:
    scores: dict[str, dict[str, list]] = {"visage": {}, **{name: {} for name in peers}, "silent_face_published": {}}
    files = []
    for label in ("real", "print", "replay"):
        for path in sorted((DATA / "spoof" / label).iterdir()):
            t0 = time.perf_counter()
            result = check(path)
            seconds = time.perf_counter() - t0
            pixels = load_image(path).pixels
            row = {"file": path.name, "label": label, "visage_score": result.score, "visage": result.decision,
                   "seconds": round(seconds, 3), "cues": result.evidence.get("passive", {}).get("cues")}
            scores["visage"].setdefault(label, []).append(result.score)
            for name, peer in peers.items():
                s = peer.score(pixels)
                row[name + "_score"] = s
                scores[name].setdefault(label, []).append(s)
            published = SILENT_FACE.get(path.name)
            row["silent_face_published"] = published
            # Published decisions as scores 1 (live) / 0 (attack) at threshold 0.5.
            scores["silent_face_published"].setdefault(label, []).append(None if published is None
                                                                        else float(published == "live"))
            files.append(row)
    metrics = {name: pad_metrics(s, THRESHOLD).to_dict() for name, s in scores.items()}
    plot_det(scores["visage"], RESULTS / "liveness_det_real.png", THRESHOLD,
             title="visage liveness on the real spoof stills (n=4)")
    return {"files": files, "metrics": metrics,
            "correct": {name: sum(_correct(l, s) for l, ss in sc.items() for s in ss) for name, sc in scores.items()},
            "total": len(files)}


def _correct(label: str, score) -> bool:
    return score is not None and (score >= THRESHOLD) == (label == "real")


def simulated(peers: dict, seed: int = 777) -> dict:
    from tqdm import tqdm
    from train_liveness import TEST_HOLDOUT

    rng = np.random.default_rng(seed)
    backgrounds = [load_image(p).pixels for p in sorted((DATA / "style" / "content").glob("*.jpg"))
                   if p.stem in {"golden_gate", "tubingen", "adain_newyork", "adain_sailboat", "hoovertowernight"}]
    photos = [p for g in TEST_HOLDOUT for p in sorted((DATA / "faces" / g).iterdir())]
    samples = []
    for path in photos:
        pixels = load_image(path).pixels
        faces = visage.detect(pixels, landmarks68=False)
        if not faces:
            continue
        b = faces[0].box
        h, w = pixels.shape[:2]
        box = (b.left / w, b.top / h, b.right / w, b.bottom / h)
        samples.append(("real", pixels))
        samples.append(("real", simulate_live_capture(pixels, rng)))
        for kind in ("print", "replay"):
            bg = backgrounds[rng.integers(len(backgrounds))] if backgrounds else None
            samples.append((kind, simulate_attack(pixels, kind, rng, background=bg, face_box=box)))
    scores: dict[str, dict[str, list]] = {"visage": {}, **{name: {} for name in peers}}
    for label, pixels in tqdm(samples, desc="simulated"):
        scores["visage"].setdefault(label, []).append(check(pixels).score)
        for name, peer in peers.items():
            scores[name].setdefault(label, []).append(peer.score(pixels))
    plot_det(scores["visage"], RESULTS / "liveness_det_simulated.png", THRESHOLD,
             title=f"visage liveness on simulated attacks ({len(photos)} held-out photos)")
    return {"photos": len(photos), "seed": seed,
            "metrics": {name: pad_metrics(s, THRESHOLD).to_dict() for name, s in scores.items()}}


def active_checks() -> dict:
    out = {"flat_photo_clips": []}
    for path in [DATA / "faces" / "openface__clapton" / "clapton-1.jpg", DATA / "faces" / "facerec__obama" / "obama.jpg",
                 DATA / "faces" / "lfw__Colin_Powell" / "Colin_Powell_0001.jpg"]:
        if not path.is_file():
            continue
        track = active.track_faces(simulate_moving_print(load_image(path).pixels), min_face_fraction=0.15)
        out["flat_photo_clips"].append({"photo": path.name, **active.planarity(track.landmarks, track.poses).to_dict()})
    clip = DATA / "video" / "real_scene" / "facerec_short_hamilton_clip.mp4"
    if clip.is_file():
        frames, fps = read_frames(clip, max_frames=200)
        segment = frames[82:200]  # one performer facing the camera and turning (frames 82–199)
        track = active.track_faces(segment, min_face_fraction=0.1)
        out["real_clip"] = {"clip": clip.name, "frames": len(segment), "with_face": track.frames_with_face,
                            "planarity": active.planarity(track.landmarks, track.poses).to_dict(),
                            "blinks_found": active.count_blinks(track.ear, fps).to_dict(),
                            "note": "stage footage, faces 80–100 px; no blink ground truth"}
    return out


def main() -> int:
    RESULTS.mkdir(parents=True, exist_ok=True)
    from train_liveness import DEFAULT_CACHE as CACHE

    peers = {}
    if CACHE.is_file():
        data = dict(np.load(CACHE, allow_pickle=False))
        peers = {"lbp_colour_texture_only": SingleCue("lbp_", data), "blur_only": SingleCue("sharp_", data)}
    else:
        print(f"no training-feature cache at {CACHE}: single-cue peers skipped (run scripts/train_liveness.py)")
    report = {"threshold": THRESHOLD, "model": visage.liveness.passive.load_model().version}
    report["real_stills"] = real_stills(peers)
    print("REAL attack stills (never used in training):")
    for name, m in report["real_stills"]["metrics"].items():
        print(f"  {name:<26} APCER {m['apcer']}  BPCER {m['bpcer']}  ACER {m['acer']}  "
              f"correct {report['real_stills']['correct'][name]}/{report['real_stills']['total']}")
    report["simulated"] = simulated(peers)
    print(f"SIMULATED attacks ({report['simulated']['photos']} held-out photos):")
    base = report["simulated"]["metrics"]["visage"]
    for name, m in report["simulated"]["metrics"].items():
        ratio = (m["acer"] / base["acer"]) if base["acer"] else float("nan")
        print(f"  {name:<26} APCER {m['apcer']}  BPCER {m['bpcer']:.3f}  ACER {m['acer']:.3f}  "
              f"BPCER@APCER5 {m['bpcer_at_apcer_5']}  ACER ratio to visage {ratio:.2f}")
    report["active"] = active_checks()
    print("ACTIVE:", json.dumps(report["active"], indent=1))
    (RESULTS / "liveness.json").write_text(json.dumps(report, indent=2, default=_json_default))
    print(f"wrote {RESULTS / 'liveness.json'}")
    return 0


def _json_default(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    return str(value)


if __name__ == "__main__":
    sys.exit(main())
