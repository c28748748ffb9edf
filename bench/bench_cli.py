"""visage's CLI vs face_recognition's CLI, side by side: identify a folder of photos in one call each.

Both run as subprocesses on the same photos: known = the first photo (by name) of each dev-set
identity in ../shared/data/faces/*/, unknown = the rest. face_recognition's CLI does it in one call
(`face_recognition known/ unknown/`); visage in two (`visage enroll --folder` then
`visage identify unknown/ --csv`), both timed. Each photo's answer is the set of names given to
its faces; it is right when that set is exactly the photo's identity. Prints the seconds, the
ratios and the agreement; writes bench/results/local/cli.json (bench/results/cli.json with --save).

    .venv/bin/python bench/bench_cli.py [--workers N] [--save]
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _results import DEV_DATA, ROOT, add_save_flag, results_dir

BIN = Path(sys.executable).parent


def split_dev_set(faces: Path, tmp: Path) -> tuple[Path, Path, Path, dict[str, str]]:
    """Link the photos into known/ (face_recognition: NAME.jpg), people/NAME/ (visage) and unknown/.

    Returns the three folders and each unknown photo's identity, by file name.
    """
    known, people, unknown = tmp / "known", tmp / "people", tmp / "unknown"
    for folder in (known, people, unknown):
        folder.mkdir()
    truth = {}
    for person_dir in sorted(p for p in faces.iterdir() if p.is_dir()):
        person = person_dir.name
        photos = sorted(p for p in person_dir.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
        first, *rest = photos
        (known / f"{person}{first.suffix}").symlink_to(first)
        (people / person).mkdir()
        (people / person / first.name).symlink_to(first)
        for photo in rest:
            name = f"{person}__{photo.name}"
            (unknown / name).symlink_to(photo)
            truth[name] = person
    return known, people, unknown, truth


def timed(command: list[str]) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run(command, check=False, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(command)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return seconds, proc.stdout


def face_recognition_answers(stdout: str) -> dict[str, set[str]]:
    """``path,name`` lines → photo name → names (unknown_person and no_persons_found are no name)."""
    answers: dict[str, set[str]] = {}
    for line in stdout.splitlines():
        path, _, name = line.rpartition(",")
        if not path:
            continue
        names = answers.setdefault(Path(path).name, set())
        if name not in ("unknown_person", "no_persons_found"):
            names.add(name)
    return answers


def visage_answers(stdout: str) -> tuple[dict[str, set[str]], int]:
    """``visage identify --csv`` → photo name → names, and the number of faces."""
    answers: dict[str, set[str]] = {}
    rows = list(csv.DictReader(io.StringIO(stdout)))
    for row in rows:
        names = answers.setdefault(Path(row["photo"]).name, set())
        if row["name"]:
            names.add(row["name"])
    return answers, len(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=1, help="visage identify --workers (default: 1)")
    parser.add_argument("--encoder", default=None, help="visage's encoder (default: visage's default)")
    add_save_flag(parser)
    args = parser.parse_args()
    out_file = results_dir(args.save) / "cli.json"
    if not (DEV_DATA / "faces").is_dir():
        raise SystemExit(f"dev set not found at {DEV_DATA}")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        known, people, unknown, truth = split_dev_set(DEV_DATA / "faces", tmp)
        known_people = len(list(known.iterdir()))
        gallery = str(tmp / "gallery.db")
        encoder = ["--encoder", args.encoder] if args.encoder else []
        fr_seconds, fr_out = timed([str(BIN / "face_recognition"), str(known), str(unknown)])
        enroll_seconds, _ = timed([str(BIN / "visage"), "enroll", "--folder", str(people), "--gallery", gallery,
                                   *encoder])
        identify_seconds, visage_out = timed([str(BIN / "visage"), "identify", str(unknown), "--gallery", gallery,
                                              "--csv", "--workers", str(args.workers)])
    theirs = face_recognition_answers(fr_out)
    ours, visage_faces = visage_answers(visage_out)
    photos = sorted(truth)
    right = {name: sum(answers.get(p, set()) == {truth[p]} for p in photos)
             for name, answers in (("visage", ours), ("face_recognition", theirs))}
    agree = sum(ours.get(p, set()) == theirs.get(p, set()) for p in photos)
    visage_seconds = enroll_seconds + identify_seconds
    result = {
        "known_people": known_people, "unknown_photos": len(photos), "visage_workers": args.workers,
        "visage_encoder": args.encoder or "default",
        "face_recognition_seconds": round(fr_seconds, 2),
        "visage_enroll_seconds": round(enroll_seconds, 2), "visage_identify_seconds": round(identify_seconds, 2),
        "visage_seconds": round(visage_seconds, 2),
        "speedup_enroll_and_identify": round(fr_seconds / visage_seconds, 2),
        "speedup_identify_alone": round(fr_seconds / identify_seconds, 2),
        "visage_faces": visage_faces,
        "photos_right": right, "accuracy": {k: round(v / len(photos), 4) for k, v in right.items()},
        "answers_agree": agree, "agreement": round(agree / len(photos), 4),
        "disagreements": {p: {"truth": truth[p], "visage": sorted(ours.get(p, set())),
                              "face_recognition": sorted(theirs.get(p, set()))}
                          for p in photos if ours.get(p, set()) != theirs.get(p, set())},
    }
    print(f"{len(photos)} unknown photos against {known_people} known people")
    print(f"face_recognition CLI, one call:      {fr_seconds:6.2f} s  ({right['face_recognition']} photos right)")
    print(f"visage enroll + identify, two calls: {visage_seconds:6.2f} s  ({right['visage']} photos right); "
          f"identify alone {identify_seconds:.2f} s")
    print(f"speed-up: {result['speedup_enroll_and_identify']}x (enroll + identify), "
          f"{result['speedup_identify_alone']}x (identify alone); answers agree on {agree}/{len(photos)} photos")
    out_file.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out_file.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
