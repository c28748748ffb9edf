"""``visage detect``, ``visage encode`` and ``visage verify``."""

from __future__ import annotations

import json
import sys

from .. import api
from ..config import DEFAULT_DETECTOR, DEFAULT_ENCODER, DEFAULT_MIN_SCORE
from ..encoders import ENCODERS
from ..faces.detect import DETECTORS
from ..media.images import load_image

EXIT_SAME, EXIT_DIFFERENT = 0, 1


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


def register(sub) -> None:
    p = sub.add_parser("detect", help="find faces: boxes, scores, 5- and 68-point landmarks")
    p.add_argument("photo")
    p.add_argument("--draw", metavar="OUT.png", help="write the photo with detections drawn on it")
    p.add_argument("--json", action="store_true", help="print JSON")
    add_detector_options(p)
    p.set_defaults(run=run_detect)

    p = sub.add_parser("encode", help="print the encoding f(x) of each face")
    p.add_argument("photo")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--which", choices=["all", "largest", "one"], default="all",
                   help="all faces, the largest, or exactly one (error otherwise)")
    add_pipeline_options(p)
    p.set_defaults(run=run_encode)

    p = sub.add_parser("verify", help="same person? exit 0 same, 1 different, 2 error")
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--threshold", type=float, default=None, help="distance threshold (default: the calibrated one)")
    p.add_argument("--which", choices=["largest", "best"], default="largest",
                   help="with several faces in a photo, compare the largest of each (default) or the closest "
                        "pair over all faces of A and B (best); a warning names the face used")
    p.add_argument("--require-live", action="store_true",
                   help="refuse (exit 4) unless the faces compared pass the liveness check, before any decision")
    p.add_argument("--json", action="store_true", help="print JSON (with the boxes compared, face_a and face_b)")
    add_pipeline_options(p)
    add_calibration_option(p)
    p.set_defaults(run=run_verify)


def run_detect(args) -> int:
    image = load_image(args.photo)
    faces = api.detect(image, detector=args.detector, min_face_size=args.min_face, min_score=args.min_score)
    if args.draw:
        from ..draw import save_drawing

        save_drawing(image, faces, args.draw)
    if args.json:
        print(json.dumps({"image": image.name, "width": image.width, "height": image.height,
                          "faces": [f.to_dict() for f in faces]}, indent=2))
    else:
        print(f"{image.name}: {len(faces)} face(s)")
        for i, f in enumerate(faces, 1):  # numbered from 1, largest first, as verify's warnings number them
            b = f.box
            print(f"  #{i}  box left={b.left} top={b.top} right={b.right} bottom={b.bottom}  score={f.score:.2f}")
        if args.draw:
            print(f"drawing written to {args.draw}")
    return 0


def run_encode(args) -> int:
    image = load_image(args.photo)
    found = api.encode(image, which=args.which, detector=args.detector, encoder=args.encoder,
                       min_face_size=args.min_face, min_score=args.min_score)
    if args.json:
        # Each face names the encoder as the flag did, and the embedding space it belongs to.
        print(json.dumps({"image": image.name, "faces": [{**e.to_dict(), "encoder": args.encoder,
                                                          "embedding": e.encoder} for e in found]}))
    else:
        print(f"{image.name}: {len(found)} face(s), encoder {args.encoder}")
        for i, e in enumerate(found):
            print(f"  #{i} {e.encoder} box={tuple(e.face.box.to_dict().values())}")
            print("   ", " ".join(f"{v:+.4f}" for v in e.encoding))
    return 0


def run_verify(args) -> int:
    result = api.verify(args.a, args.b, threshold=args.threshold, calibration=args.calibration,
                        detector=args.detector, encoder=args.encoder,
                        min_face_size=args.min_face, min_score=args.min_score, which=args.which,
                        require_live=args.require_live)
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if args.json:
        print(json.dumps({"a": args.a, "b": args.b, **result.to_dict()}))
    else:
        verdict = "SAME person" if result.same else "DIFFERENT people"
        print(f"{verdict}: distance {result.distance:.4f} vs threshold {result.threshold:.4f} "
              f"(P(same) = {result.probability:.3f}, encoder {result.encoder})")
    return EXIT_SAME if result.same else EXIT_DIFFERENT
