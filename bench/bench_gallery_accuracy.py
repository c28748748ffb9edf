"""Open-set identification accuracy of the gallery on the dev set, visage vs face_recognition.

    .venv/bin/python bench/bench_gallery_accuracy.py [--data ../shared/data] [--splits 10]

For m = 1 (one-shot), 2, 3 and 5 photos enrolled per person (people with more than m photos;
random splits, repeated), every other photo of an enrolled person is a genuine probe, and:

- rank-1: the nearest person is the right one;
- DIR (detection and identification rate): rank-1 *and* within the threshold;
- FAR, leave-one-identity-out: each identity in turn is taken out of the gallery and all its photos
  are probes; a probe within the threshold of anyone is falsely accepted.

Rules compared: visage matching each person's nearest face, visage matching each person's mean
encoding (both at the shipped calibrated threshold), and face_recognition's way, ``compare_faces``
/ ``face_distance`` over the list of known encodings at its default tolerance 0.6, on its own
encodings. Writes bench/results/gallery_accuracy.json and gallery_accuracy.png (DIR against FAR
as the threshold moves) with --save, else the same names under bench/results/local/.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import add_save_flag, results_dir  # noqa: E402
from bench_gallery_data import DEFAULT_DATA, load_dev_encodings  # noqa: E402

from visage.gallery import ExactIndex  # noqa: E402
from visage.evaluation.verification import default_calibration  # noqa: E402

PEER_TOLERANCE = 0.6  # face_recognition.compare_faces' default


def _face_distance():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import face_recognition
    return face_recognition.face_distance


def top1(vectors, labels, enrolled, probes, rule):
    """(predicted label, distance) of the nearest person for each probe row."""
    if rule == "peer":
        face_distance = _face_distance()
        known = [vectors[i] for i in enrolled]  # a list of known encodings, as in its examples
        out = []
        for p in probes:
            d = face_distance(known, vectors[p])
            best = int(np.argmin(d))
            out.append((labels[enrolled[best]], float(d[best])))
        return out
    names = sorted({labels[i] for i in enrolled})
    pid = {n: k for k, n in enumerate(names)}
    index = ExactIndex(vectors.shape[1])
    index.add(np.arange(len(enrolled)), [pid[labels[i]] for i in enrolled], vectors[enrolled])
    hits = index.search(vectors[probes], 1, match=rule)
    return [(names[h[0][0]], h[0][1]) for h in hits]


def evaluate(labels, vectors, m, rule, splits, thresholds):
    """Genuine (correct, distance) and impostor distances over ``splits`` random enrolments."""
    ok = ~np.isnan(vectors[:, 0])
    identities = sorted(set(labels[ok]))
    genuine_correct, genuine_d, impostor_d = [], [], []
    for split in range(splits):
        rng = np.random.default_rng(split)
        enrol, probe = {}, {}
        for ident in identities:
            rows = np.flatnonzero((labels == ident) & ok)
            rows = rng.permutation(rows)
            if len(rows) > m:
                enrol[ident], probe[ident] = list(rows[:m]), list(rows[m:])
        all_enrolled = [i for rows in enrol.values() for i in rows]
        genuine = [i for rows in probe.values() for i in rows]
        for (pred, d), i in zip(top1(vectors, labels, all_enrolled, genuine, rule), genuine):
            genuine_correct.append(pred == labels[i])
            genuine_d.append(d)
        for ident in identities:  # leave this identity out of the gallery; all its photos probe
            gallery = [i for other, rows in enrol.items() if other != ident for i in rows]
            rows = list(np.flatnonzero((labels == ident) & ok))
            impostor_d += [d for _, d in top1(vectors, labels, gallery, rows, rule)]
    correct, gd, imp = np.array(genuine_correct), np.array(genuine_d), np.array(impostor_d)
    return correct, gd, imp


def summary(correct, gd, imp, t):
    below = imp.min()
    return {"genuine_probes": int(len(gd)), "impostor_probes": int(len(imp)), "threshold": round(float(t), 4),
            "rank1": round(float(correct.mean()), 4),
            "dir_at_threshold": round(float(np.mean(correct & (gd <= t))), 4),
            "far_at_threshold": round(float(np.mean(imp <= t)), 4),
            "dir_at_far0": round(float(np.mean(correct & (gd < below))), 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--splits", type=int, default=10)
    parser.add_argument("--out", type=Path, help="JSON to write, the PNG beside it (default: in the results folder)")
    add_save_flag(parser)
    args = parser.parse_args()
    if args.out is None:
        args.out = results_dir(args.save) / "gallery_accuracy.json"

    dev = load_dev_encodings(args.data)
    t_visage = default_calibration("dlib-resnet-v1").threshold
    results = {"machine": platform.platform(), "photos": int(len(dev.labels)),
               "identities": int(len(set(dev.labels))), "splits": args.splits,
               "visage_threshold": t_visage, "peer_tolerance": PEER_TOLERANCE,
               "encode_s_per_photo": {"visage": round(dev.visage_s_per_photo, 4),
                                      "face_recognition": round(dev.peer_s_per_photo, 4)},
               "by_enrolled_photos": {}}
    curves = {}
    for m in (1, 2, 3, 5):
        row = {}
        for rule, vectors, t in (("nearest", dev.visage, t_visage), ("mean", dev.visage, t_visage),
                                 ("peer", dev.peer, PEER_TOLERANCE)):
            if m == 1 and rule == "mean":
                continue  # one photo: the mean is the photo
            correct, gd, imp = evaluate(dev.labels, vectors, m, rule, args.splits, None)
            name = {"nearest": "visage_nearest", "mean": "visage_mean", "peer": "face_recognition"}[rule]
            row[name] = summary(correct, gd, imp, t)
            row[name]["at_thresholds"] = {f"{s:.2f}": {"dir": round(float(np.mean(correct & (gd <= s))), 4),
                                                       "far": round(float(np.mean(imp <= s)), 4)}
                                          for s in (0.45, 0.5, 0.55, 0.6)}
            sweep = np.linspace(0.3, 0.8, 101)
            curves[(m, name)] = ([float(np.mean(imp <= s)) for s in sweep],
                                 [float(np.mean(correct & (gd <= s))) for s in sweep])
        results["by_enrolled_photos"][str(m)] = row

    # The rule: the one with the higher DIR at the shipped threshold, summed over m >= 2, FAR alike.
    score = {r: sum(results["by_enrolled_photos"][str(m)][r]["dir_at_threshold"]
                    - results["by_enrolled_photos"][str(m)][r]["far_at_threshold"] for m in (2, 3, 5))
             for r in ("visage_nearest", "visage_mean")}
    results["chosen_rule"] = max(score, key=score.get).replace("visage_", "")
    results["rule_scores_dir_minus_far"] = {k: round(v, 4) for k, v in score.items()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 4, figsize=(16, 7.5))
    sweep = np.linspace(0.3, 0.8, 101)
    for col, m in enumerate((1, 2, 3, 5)):
        top, bottom = axes[0, col], axes[1, col]
        for (mm, name), (far, dir_) in curves.items():
            if mm == m:
                top.plot(far, dir_, label=name)
                bottom.plot(sweep, far, label=name)
        top.set_title(f"{m} photo(s) enrolled per person")
        top.set_xlabel("false accept rate (leave-one-identity-out)")
        top.set_xlim(0, 0.2)
        top.set_ylim(0.8, 1.005)
        bottom.axvline(t_visage, color="grey", ls="--", lw=1)
        bottom.text(t_visage, 0.9, " shipped\n threshold", fontsize=8)
        bottom.set_xlabel("distance threshold")
        bottom.set_ylim(0, 1)
        for ax in (top, bottom):
            ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("detection and identification rate")
    axes[1, 0].set_ylabel("false accept rate")
    axes[0, 0].legend()
    axes[0, 1].legend()
    fig.tight_layout()
    fig.savefig(args.out.with_suffix(".png"), dpi=90)

    print(f"{'m':>2} {'rule':<17} {'rank-1':>7} {'DIR@t':>7} {'FAR@t':>7} {'DIR@FAR0':>9}")
    for m, row in results["by_enrolled_photos"].items():
        for name, s in row.items():
            print(f"{m:>2} {name:<17} {s['rank1']:7.3f} {s['dir_at_threshold']:7.3f} {s['far_at_threshold']:7.3f} "
                  f"{s['dir_at_far0']:9.3f}")
    one = results["by_enrolled_photos"]["1"]
    print(f"one-shot FAR ratio visage/face_recognition: "
          f"{one['visage_nearest']['far_at_threshold'] / max(one['face_recognition']['far_at_threshold'], 1e-9):.2f}; "
          f"DIR ratio {one['visage_nearest']['dir_at_threshold'] / max(one['face_recognition']['dir_at_threshold'], 1e-9):.2f}")
    for m in ("1", "3"):
        sweep = results["by_enrolled_photos"][m]["visage_nearest"]["at_thresholds"]
        print(f"visage nearest, {m} photo(s): " + ", ".join(f"t={k}: DIR {v['dir']:.3f} FAR {v['far']:.3f}"
                                                            for k, v in sweep.items()))
    print(f"chosen rule for several photos: {results['chosen_rule']} ({results['rule_scores_dir_minus_far']})")
    print(f"wrote {args.out} and {args.out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
