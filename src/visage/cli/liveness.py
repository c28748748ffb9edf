"""``visage liveness`` and ``visage liveness-eval``."""

from __future__ import annotations

import json

from .faces import add_detector_options

EXIT_LIVE, EXIT_ATTACK, EXIT_INSUFFICIENT = 0, 1, 3
LIVENESS_EPILOG = ("exit status: 0 live, 1 attack, 3 insufficient evidence (no face, too small, too few frames), "
                   "2 error (unreadable file, bad option). A clip without --challenge is judged, but a replayed "
                   "video cannot be ruled out without one. `verify`/`identify --require-live` exit 4 when refused.")


def register(sub) -> None:
    p = sub.add_parser("liveness", help="live face or presentation attack? exit 0 live, 1 attack, "
                                        "3 insufficient evidence, 2 error", epilog=LIVENESS_EPILOG)
    p.add_argument("input", metavar="PHOTO_OR_VIDEO")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--challenge", metavar="ACTIONS",
                   help="comma-separated actions the person was asked to do in this video, in order "
                        "(turn_left, turn_right, blink); see `visage liveness-challenge`")
    add_detector_options(p)
    p.set_defaults(run=run_liveness)

    p = sub.add_parser("liveness-challenge", help="draw a random challenge for a liveness video")
    p.add_argument("--length", type=int, default=3, help="number of actions (default: 3)")
    p.set_defaults(run=run_challenge)

    p = sub.add_parser("liveness-eval", help="ISO/IEC 30107-3 metrics on a folder with real/, print/, replay/...")
    p.add_argument("folder", metavar="DIR")
    p.add_argument("--plot", default="liveness_det.png", metavar="OUT.png",
                   help="where to write the DET plot (default: liveness_det.png)")
    p.add_argument("--json", action="store_true", help="print JSON")
    add_detector_options(p)
    p.set_defaults(run=run_eval)


def run_liveness(args) -> int:
    from .. import liveness

    challenge = [a.strip() for a in args.challenge.split(",") if a.strip()] if args.challenge else None
    if challenge:
        from ..errors import VisageError
        from ..liveness.active import CHALLENGE_ACTIONS

        unknown = [a for a in challenge if a not in CHALLENGE_ACTIONS]
        if unknown:
            raise VisageError(f"unknown challenge action(s) {', '.join(unknown)}; use {', '.join(CHALLENGE_ACTIONS)}")
    result = liveness.check(args.input, challenge=challenge, detector=args.detector, min_face_size=args.min_face,
                            min_score=args.min_score)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        score = "-" if result.score is None else f"{result.score:.3f}"
        print(f"{result.source}: {result.decision.upper()}  score={score}  (live at ≥ {result.threshold})")
        print(f"  {result.reason}")
        for cue, value in result.evidence.items():
            llr = value.get("llr") if isinstance(value, dict) else None
            detail = {k: v for k, v in value.items() if k != "llr"} if isinstance(value, dict) else value
            weight = f"  [log-LR {llr:+.2f}]" if llr is not None else ""
            print(f"  {cue:<10}{weight} {json.dumps(_short(detail))}")
        note = result.evidence.get("challenge", {}).get("note")
        if note:
            print(f"  note: {note}")
    return {True: EXIT_LIVE, False: EXIT_ATTACK, None: EXIT_INSUFFICIENT}[result.live]


def run_challenge(args) -> int:
    from ..liveness import new_challenge

    print(",".join(new_challenge(args.length)))
    return 0


def run_eval(args) -> int:
    from ..liveness.evaluate import evaluate_folder

    evaluation = evaluate_folder(args.folder, plot=args.plot, detector=args.detector, min_face_size=args.min_face,
                                 min_score=args.min_score)
    m = evaluation.metrics
    if args.json:
        print(json.dumps({**evaluation.to_dict(), "plot": args.plot}, indent=2))
        return 0
    print(f"{args.folder}: " + ", ".join(f"{k}={n}" for k, n in m.counts.items())
          + f"  (threshold {m.threshold})")
    for kind, rate in m.apcer.items():
        print(f"  APCER[{kind}] = {rate:.1%}")
    print(f"  BPCER = {m.bpcer:.1%}")
    print(f"  ACER = {m.acer:.1%}")
    print(f"  BPCER at APCER=5% = {m.bpcer_at_apcer_5:.1%}")
    unscored = {k: v for k, v in m.unscored.items() if v}
    if unscored:
        print("  without evidence (no face / too few frames; counted as refused): "
              + ", ".join(f"{k}={v}" for k, v in unscored.items()))
    print(f"DET plot written to {args.plot}")
    return 0


def _short(value, limit: int = 8):
    """Trim long lists so one line of evidence stays readable."""
    if isinstance(value, dict):
        return {k: _short(v, limit) for k, v in value.items()}
    if isinstance(value, list) and len(value) > limit:
        return value[:limit] + ["..."]
    if isinstance(value, float):
        return round(value, 4)
    return value
