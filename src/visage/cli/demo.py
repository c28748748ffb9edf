"""``visage demo``: the main job on embedded defaults."""

from __future__ import annotations

from pathlib import Path

from ..demo import default_data_dir, run_demo
from ..errors import VisageError
from ..wording import probability
from .faces import add_detector_options


def register(sub) -> None:
    p = sub.add_parser("demo", help="detect, draw and verify faces on sample photos")
    p.add_argument("-o", "--out", default="visage-demo", help="folder for the pictures (default: visage-demo)")
    p.add_argument("--data", default=None, metavar="DIR",
                   help="dev-set folder to take photos from (default: ../shared/data beside the source checkout "
                        "when it is there, wherever you run from; else skimage's astronaut)")
    add_detector_options(p)
    p.set_defaults(run=run)


def run(args) -> int:
    data = Path(args.data) if args.data else default_data_dir()
    if data is not None and not data.is_dir():
        raise VisageError(f"{data}: --data is not a folder")
    result = run_demo(args.out, data, detector=args.detector, min_face_size=args.min_face, min_score=args.min_score)
    print(f"Detection on {result.photo.name} ({result.photo.width}×{result.photo.height}): "
          f"{len(result.faces)} face(s)")
    for i, face in enumerate(result.faces, 1):
        b = face.box
        print(f"  face #{i}: box ({b.left}, {b.top}) – ({b.right}, {b.bottom}), score {face.score:.2f}")
    print(f"  drawn on the photo: {result.drawing}")
    print("Verification:")
    for first, second, v in result.verifications:
        verdict = "same person" if v.same else "different people"
        print(f"  {Path(first).name} vs {Path(second).name}: {verdict} (distance {v.distance:.3f}, threshold "
              f"{v.threshold:.3f}, P(same) {probability(v.probability)})")
    return 0
