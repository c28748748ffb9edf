"""``visage detect``, ``visage encode`` and ``visage verify``, and the batch options every face command shares.

Each command takes several photos and folders (a folder stands for its images, recursively,
sorted); the batch work, skip reports and records come from :mod:`visage.batch`.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

from .. import api
from ..batch import (
    DetectedFace,
    EncodedFace,
    Outcome,
    PairRecord,
    PairSpec,
    Settings,
    Summary,
    Verdict,
    detect_photos,
    encode_photos,
    expand_sources,
    read_pairs,
    verify_pairs,
)
from ..config import DEFAULT_DETECTOR, DEFAULT_ENCODER, DEFAULT_MIN_SCORE
from ..encoders import ENCODERS
from ..errors import VisageError
from ..faces.detect import DETECTORS

EXIT_SAME, EXIT_DIFFERENT = 0, 1
R = TypeVar("R")
#: The exit status of one input's verdict. A run over several inputs exits with its worst input's:
#: 2 (some input could not be processed) before 4 (refused), 3 (insufficient evidence), 1, 0.
EXIT_FOR: dict[Verdict, int] = {"ok": 0, "negative": 1, "insufficient": 3, "refused": 4, "skipped": 2}
BATCH_EPILOG = ("PHOTO may be a folder: it stands for the images in it, recursively, sorted. Bad files are "
                "reported on stderr (one line each, with the reason) and skipped, and a summary ends the run "
                "(N photos, M faces, K skipped). Exit status: 0 when every input was processed, 2 when any "
                "could not be.")


def add_detector_options(parser) -> None:
    """``--detector``, ``--min-face`` and ``--min-score``, shared by every command that finds faces."""
    parser.add_argument("--detector", choices=sorted(DETECTORS), default=DEFAULT_DETECTOR,
                        help=f"face detector (default: {DEFAULT_DETECTOR})")
    parser.add_argument("--min-face", type=float, default=None, metavar="PX",
                        help="smallest face to find, in pixels (default: 5%% of the shorter side, at least 40)")
    floors = ", ".join(f"{name} {score:g}" for name, score in DEFAULT_MIN_SCORE.items())
    parser.add_argument("--min-score", type=float, default=None, metavar="S",
                        help=f"drop faces the detector scores below S (default, per detector: {floors}; "
                             "measured to keep every dev-set face)")


def add_encoder_option(parser, default: str | None = DEFAULT_ENCODER, default_help: str = DEFAULT_ENCODER) -> None:
    """``--encoder``: a registered encoder or a model file from ``visage train`` (any path, checked when loaded)."""
    parser.add_argument("--encoder", default=default, metavar="NAME|MODEL.pt",
                        help=f"face encoder: {', '.join(sorted(ENCODERS))}, or a model.pt written by "
                             f"`visage train` (default: {default_help})")


def add_calibration_option(parser) -> None:
    """``--calibration``: the file ``visage calibrate`` wrote, for commands that decide."""
    parser.add_argument("--calibration", metavar="FILE", default=None,
                        help="calibration.json written by `visage calibrate` (or its folder): its threshold and "
                             "P(same) decide; it must be fitted for the encoder in use (default: the encoder's "
                             "shipped calibration)")


def add_pipeline_options(parser) -> None:
    """Detector options plus ``--encoder``, shared by every command that encodes faces."""
    add_detector_options(parser)
    add_encoder_option(parser)


def add_batch_options(parser, json_help: str) -> None:
    """``--json`` (one input), ``--csv``, ``--jsonl``, ``--workers`` and ``--progress``, shared by the batch commands."""
    formats = parser.add_mutually_exclusive_group()
    formats.add_argument("--json", action="store_true", help=f"{json_help} (one input only; default: readable text)")
    formats.add_argument("--csv", action="store_true", help="print CSV, a header and one row per face "
                                                            "(default: readable text)")
    formats.add_argument("--jsonl", action="store_true", help="print one JSON object per face, a line each "
                                                              "(default: readable text)")
    parser.add_argument("--workers", type=int, default=1, metavar="N",
                        help="processes to share the photos out to, each loading the models once; output "
                             "keeps the input order (default: 1, this process)")
    parser.add_argument("--progress", action="store_true",
                        help="show a progress bar on stderr (default: only when stderr is a terminal)")


def settings_of(args) -> Settings:
    """The detection and encoding options the command line gave."""
    return Settings(detector=args.detector, encoder=getattr(args, "encoder", None) or DEFAULT_ENCODER,
                    min_face_size=args.min_face, min_score=args.min_score)


def batch_kwargs(args) -> dict:
    """``workers`` and ``progress`` for the :mod:`visage.batch` functions."""
    if args.workers < 1:
        raise VisageError(f"--workers must be at least 1, not {args.workers}")
    return {"workers": args.workers, "progress": args.progress or sys.stderr.isatty()}


def one_input(args, sources: list) -> None:
    """``--json`` prints one input's object: refuse it for several inputs."""
    if args.json and len(sources) != 1:
        raise VisageError(f"--json prints one photo's object, and {len(sources)} inputs were given; "
                          "use --jsonl (one line per face) or --csv")


def print_outcomes(outcomes: Iterable[Outcome], args, columns: tuple[str, ...],
                   header: Callable[[Outcome], str] | None = None, noun: str = "photo",
                   after: Callable[[Outcome], list[str]] | None = None,
                   as_object: Callable[[Outcome], dict] | None = None, indent: int | None = None) -> Summary:
    """Print each outcome as the flags ask and report skips on stderr; returns the run's summary.

    ``--csv`` prints ``columns`` then a row per record, ``--jsonl`` an object per record, and text
    ``header`` (the line opening an input), each record's text and ``after``'s lines. ``--json`` prints
    ``as_object`` of the one input instead, as the single-photo commands always have. Every form
    but ``--json`` ends with the summary on stderr.
    """
    writer = csv.writer(sys.stdout, lineterminator="\n") if args.csv else None
    if writer:
        writer.writerow(columns)
    seen = []
    for outcome in outcomes:
        seen.append(outcome)
        if outcome.skipped is not None:
            what = "refused" if outcome.verdict == "refused" else "skipped"
            print(f"visage: {what} {outcome.source}: {outcome.skipped}", file=sys.stderr, flush=True)
        elif args.json and as_object is not None:
            print(json.dumps(as_object(outcome), indent=indent))
        elif writer is not None or args.jsonl:
            if not outcome.records:
                print(f"visage: {outcome.source}: no face found", file=sys.stderr)
            for record in outcome.records:
                print(json.dumps(record.to_dict())) if writer is None else writer.writerow(record.csv_row())
        else:
            if header is not None:
                print(header(outcome))
            for record in outcome.records:
                print(record.text())
            for line in after(outcome) if after is not None else []:
                print(line)
        sys.stdout.flush()
    summary = Summary.of(seen, noun)
    if not args.json:
        print(summary.text(), file=sys.stderr)
    return summary


def faces_header(extra: str = "") -> Callable[[Outcome], str]:
    """The text line opening a photo's faces: ``photo.jpg: 2 faces``, then ``extra``."""
    def header(outcome: Outcome) -> str:
        n = len(outcome.records)
        return f"{outcome.source}: {n} face{'' if n == 1 else 's'}{extra}"
    return header


def register(sub) -> None:
    p = sub.add_parser("detect", help="find faces: boxes, scores, 5- and 68-point landmarks",
                       epilog=BATCH_EPILOG)
    p.add_argument("photos", nargs="+", metavar="PHOTO", help="photos or folders of photos")
    p.add_argument("--draw", metavar="OUT.png",
                   help="write the photo with detections drawn on it (one photo only; default: no drawing)")
    add_batch_options(p, "print one JSON object: the photo's size and every face")
    add_detector_options(p)
    p.set_defaults(run=run_detect)

    p = sub.add_parser("encode", help="print the encoding f(x) of each face", epilog=BATCH_EPILOG)
    p.add_argument("photos", nargs="+", metavar="PHOTO", help="photos or folders of photos")
    p.add_argument("--which", choices=["all", "largest", "one"], default="all",
                   help="all faces, the largest, or exactly one (the photo is skipped otherwise) (default: all)")
    add_batch_options(p, "print one JSON object with every face's encoding")
    add_pipeline_options(p)
    p.set_defaults(run=run_encode)

    p = sub.add_parser("verify", help="same person? exit 0 same, 1 different, 2 error",
                       description="Compare A with B (exit 0 same, 1 different, 2 error, as cmp). With more "
                                   "photos or a folder, compare A with each of them; with --pairs, each pair "
                                   "of a list. One line per pair.",
                       epilog="PHOTO may be a folder (its images, recursively, sorted). Several pairs exit with "
                              "the worst pair's status: 2 when any pair could not be compared (a bad file, no "
                              "face), else 1 when any pair is different, else 0. Bad pairs are reported on "
                              "stderr and skipped; a summary ends the run.")
    p.add_argument("photos", nargs="*", metavar="PHOTO", help="A, then B (or several photos and folders)")
    p.add_argument("--pairs", metavar="PAIRS.tsv",
                   help="verify each pair of a tab-separated file: img_a, img_b and optionally same (1/0), with "
                        "an optional header; paths relative to the file's folder (default: compare the photos given)")
    p.add_argument("--threshold", type=float, default=None, help="distance threshold (default: the calibrated one)")
    p.add_argument("--which", choices=["largest", "best"], default="largest",
                   help="with several faces in a photo, compare the largest of each (default) or the closest "
                        "pair over all faces of A and B (best); a warning names the face used")
    p.add_argument("--require-live", action="store_true",
                   help="refuse (exit 4) unless the faces compared pass the liveness check, before any decision "
                        "(one pair only; default: no liveness check)")
    add_batch_options(p, "print one JSON object (with the boxes compared, face_a and face_b)")
    add_pipeline_options(p)
    add_calibration_option(p)
    p.set_defaults(run=run_verify)


def records_of(outcome: Outcome, kind: type[R]) -> list[R]:
    """The outcome's records of type ``kind`` (a command's records are all of one type)."""
    return [r for r in outcome.records if isinstance(r, kind)]


def run_detect(args) -> int:
    sources = expand_sources(args.photos)
    one_input(args, sources)
    if args.draw and len(sources) != 1:
        raise VisageError(f"--draw writes one photo's drawing, and {len(sources)} photos were given")
    outcomes = list(detect_photos(sources, settings_of(args), **batch_kwargs(args)))

    def as_object(o: Outcome) -> dict:
        width, height = o.size or (0, 0)
        return {"image": o.source, "width": width, "height": height,
                "faces": [r.detected.to_dict() for r in records_of(o, DetectedFace)]}

    summary = print_outcomes(outcomes, args, DetectedFace.CSV_COLUMNS, faces_header(), as_object=as_object, indent=2)
    if args.draw and not summary.skipped:
        from ..draw import save_drawing
        from ..media.images import load_image

        save_drawing(load_image(sources[0]), [r.detected for r in records_of(outcomes[0], DetectedFace)], args.draw)
        print(f"drawing written to {args.draw}", file=sys.stderr)
    return EXIT_FOR[summary.worst]


def run_encode(args) -> int:
    sources = expand_sources(args.photos)
    one_input(args, sources)
    outcomes = encode_photos(sources, settings_of(args), which=args.which, **batch_kwargs(args))

    def as_object(o: Outcome) -> dict:
        return {"image": o.source, "faces": [{k: v for k, v in r.to_dict().items() if k not in ("photo", "face")}
                                             for r in records_of(o, EncodedFace)]}

    summary = print_outcomes(outcomes, args, EncodedFace.CSV_COLUMNS, faces_header(f", encoder {args.encoder}"),
                             as_object=as_object)
    return EXIT_FOR[summary.worst]


def run_verify(args) -> int:
    if args.pairs:
        if args.photos:
            raise VisageError("give --pairs FILE or photos to compare, not both")
        pairs = read_pairs(args.pairs)
    else:
        if len(args.photos) < 2:
            raise VisageError("verify needs two photos (A B), A and several photos or folders, or --pairs FILE")
        reference, *others = args.photos
        targets = expand_sources(others)
        if len(targets) == 1 and not (args.csv or args.jsonl):
            return _verify_one(args, reference, str(targets[0]))
        if Path(reference).is_dir():
            raise VisageError(f"{reference}: the first photo is compared with the others; it cannot be a folder")
        pairs = [PairSpec(Path(reference), t) for t in targets if t != Path(reference)]
    if args.require_live:
        raise VisageError("--require-live checks one pair (verify A B); it does not work with several")
    one_input(args, pairs)
    outcomes = verify_pairs(pairs, settings_of(args), threshold=args.threshold, calibration=args.calibration,
                            which=args.which, **batch_kwargs(args))
    summary = print_outcomes(outcomes, args, PairRecord.CSV_COLUMNS, noun="pair")
    return EXIT_FOR[summary.worst]


def _verify_one(args, a: str, b: str) -> int:
    """``verify A B``: one pair, with --require-live and warnings, exit 0 same, 1 different."""
    result = api.verify(a, b, threshold=args.threshold, calibration=args.calibration,
                        detector=args.detector, encoder=args.encoder,
                        min_face_size=args.min_face, min_score=args.min_score, which=args.which,
                        require_live=args.require_live)
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if args.json:
        print(json.dumps({"a": a, "b": b, **result.to_dict()}))
    else:
        print(PairRecord(a, b, result).text())
    return EXIT_SAME if result.same else EXIT_DIFFERENT
