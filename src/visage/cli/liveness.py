"""``visage liveness`` and ``visage liveness-eval``."""

from __future__ import annotations

import json

from .faces import (
    EXIT_FOR,
    add_batch_options,
    add_detector_options,
    batch_kwargs,
    one_input,
    print_outcomes,
    records_of,
    settings_of,
)

EXIT_LIVE, EXIT_ATTACK, EXIT_INSUFFICIENT = 0, 1, 3
LIVENESS_EPILOG = ("exit status: 0 live, 1 attack, 3 insufficient evidence (no face, too small, too few frames), "
                   "2 error (unreadable file, bad option). A clip without --challenge is judged, but a replayed "
                   "video cannot be ruled out without one. `verify`/`identify --require-live` exit 4 when refused. "
                   "A folder stands for its photos and clips, recursively, sorted. Several inputs exit with the "
                   "worst input's status: 2 (some input unreadable; reported on stderr and skipped), then 3, then 1.")


def register(sub) -> None:
    p = sub.add_parser("liveness", help="live face or presentation attack? exit 0 live, 1 attack, "
                                        "3 insufficient evidence, 2 error", epilog=LIVENESS_EPILOG)
    p.add_argument("inputs", nargs="+", metavar="PHOTO_OR_VIDEO", help="photos, clips or folders of them")
    p.add_argument("--challenge", metavar="ACTIONS",
                   help="comma-separated actions the person was asked to do in this video, in order "
                        "(turn_left, turn_right, blink); see `visage liveness-challenge` (default: none)")
    add_batch_options(p, "print one JSON object: the decision, score and every cue")
    add_detector_options(p)
    p.set_defaults(run=run_liveness)

    p = sub.add_parser("liveness-challenge", help="draw a random challenge for a liveness video")
    p.add_argument("--length", type=int, default=3, help="number of actions (default: 3)")
    p.set_defaults(run=run_challenge)

    p = sub.add_parser("liveness-eval", help="ISO/IEC 30107-3 metrics on a folder with real/, print/, replay/...")
    p.add_argument("folder", metavar="DIR")
    p.add_argument("--plot", default=None, metavar="FILE.png",
                   help="write the DET plot to FILE.png (default: no plot)")
    p.add_argument("--json", action="store_true", help="print JSON")
    add_detector_options(p)
    p.set_defaults(run=run_eval)


def run_liveness(args) -> int:
    from ..batch import LivenessRecord, Outcome, expand_sources, liveness_inputs
    from ..media.images import IMAGE_SUFFIXES
    from ..media.video import VIDEO_SUFFIXES

    challenge = [a.strip() for a in args.challenge.split(",") if a.strip()] if args.challenge else None
    if challenge:
        from ..errors import VisageError
        from ..liveness.active import CHALLENGE_ACTIONS

        unknown = [a for a in challenge if a not in CHALLENGE_ACTIONS]
        if unknown:
            raise VisageError(f"unknown challenge action(s) {', '.join(unknown)}; use {', '.join(CHALLENGE_ACTIONS)}")
    sources = expand_sources(args.inputs, suffixes=IMAGE_SUFFIXES | VIDEO_SUFFIXES)
    one_input(args, sources)
    outcomes = liveness_inputs(sources, settings_of(args), challenge=challenge, **batch_kwargs(args))

    def as_object(o: Outcome) -> dict:
        return records_of(o, LivenessRecord)[0].result.to_dict()

    summary = print_outcomes(outcomes, args, LivenessRecord.CSV_COLUMNS, lambda o: f"{o.source}:",
                             after=_evidence_lines, as_object=as_object, indent=2)
    return EXIT_FOR[summary.worst]


def _evidence_lines(outcome) -> list[str]:
    """The cues a liveness verdict rests on, a line each, for the text output."""
    from ..batch import LivenessRecord

    lines = []
    for record in (r for r in outcome.records if isinstance(r, LivenessRecord)):
        for cue, value in record.result.evidence.items():
            llr = value.get("llr") if isinstance(value, dict) else None
            detail = {k: v for k, v in value.items() if k != "llr"} if isinstance(value, dict) else value
            weight = f"  [log-LR {llr:+.2f}]" if llr is not None else ""
            lines.append(f"    {cue:<10}{weight} {json.dumps(_short(detail))}")
        note = record.result.evidence.get("challenge", {}).get("note")
        if note:
            lines.append(f"    note: {note}")
    return lines


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
    if args.plot:
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
