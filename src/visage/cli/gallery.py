"""Gallery commands: ``enroll``, ``identify``, ``people``, ``gallery`` and ``cluster``.

Argument parsing and printing only; the work is done by :class:`visage.gallery.Gallery`, which
also decides which encoder a gallery uses when ``--encoder`` is left out (the one that filled it).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ..batch import expand_sources
from ..encoders import DEFAULT_ENCODER
from ..errors import GalleryError, VisageError
from .faces import (
    BATCH_EPILOG,
    EXIT_FOR,
    add_batch_options,
    add_calibration_option,
    add_detector_options,
    add_encoder_option,
    batch_kwargs,
    faces_header,
    one_input,
    print_outcomes,
    records_of,
    settings_of,
)

if TYPE_CHECKING:
    from ..gallery import Gallery


def _common(p: argparse.ArgumentParser, json_flag: bool = True, of_gallery: bool = True) -> None:
    """``--gallery``, ``--encoder`` and ``--json``; ``of_gallery``: the encoder defaults to the gallery's own."""
    p.add_argument("--gallery", metavar="FILE", default=None,
                   help="gallery file, or milvus-lite:PATH / milvus://HOST:PORT "
                        "(default $VISAGE_HOME/gallery.db, else ~/.local/share/visage/gallery.db)")
    if of_gallery:
        add_encoder_option(p, default=None, default_help=f"the one that filled the gallery; {DEFAULT_ENCODER} "
                                                         "for a new one. A gallery holds one encoder's encodings")
    else:
        add_encoder_option(p)
    if json_flag:
        p.add_argument("--json", action="store_true", help="print JSON")


def register(sub) -> None:
    p = sub.add_parser("enroll", help="enrol people from photos (one face per photo)",
                       description="Enrol NAME from PHOTOs, or one person per sub-folder of --folder, "
                                   "or the named clusters of a `visage cluster` run. Bad photos are "
                                   "reported and skipped.")
    p.add_argument("name", nargs="?", help="the person's name")
    p.add_argument("photos", nargs="*", metavar="PHOTO", help="photos of the person, one face each")
    p.add_argument("--folder", metavar="DIR", help="one sub-folder per person, named after them")
    p.add_argument("--clusters", metavar="FILE", help="clusters.json written by `visage cluster`")
    p.add_argument("--name", dest="cluster_names", action="append", default=[], metavar="ID=NAME",
                   help="with --clusters: name cluster ID (repeatable); clusters named in the file count too")
    _common(p)
    p.set_defaults(run=run_enroll)

    p = sub.add_parser("identify", help="who is in these photos? (each face against the gallery)",
                       epilog=f"{BATCH_EPILOG} With several photos, 1 when some photo has no one named (as for one "
                              "photo), and 4 when a photo was refused by --require-live.")
    p.add_argument("photos", nargs="+", metavar="PHOTO", help="photos or folders of photos")
    p.add_argument("--top", type=int, default=5, metavar="K", help="candidates per face (default 5)")
    p.add_argument("--threshold", type=float,
                   help="distance threshold (default: the calibration's open-set threshold for the number of people "
                        "enrolled, which tightens as the gallery grows so that about 1%% of strangers are accepted; "
                        "for dlib+facenet 0.78 with 1 person, 0.69 with 16, 0.62 with 100, 0.52 with 1,000. "
                        "`visage gallery info` and every result show the one used)")
    p.add_argument("--match", choices=["nearest", "mean"], default=None,
                   help="compare with each person's nearest face (default) or their mean encoding")
    p.add_argument("--claim", metavar="NAME",
                   help="verify one claimed identity (1:1) in one photo instead of searching (default: search)")
    p.add_argument("--require-live", action="store_true",
                   help="refuse (exit 4) unless the photo passes the liveness check, before any matching "
                        "(default: no liveness check)")
    _common(p, json_flag=False)
    add_calibration_option(p)
    add_detector_options(p)
    add_batch_options(p, "print one JSON object: each face's box, name (null when unknown), distance, candidates")
    p.set_defaults(run=run_identify)

    p = sub.add_parser("people", help="list, show, rename or remove enrolled people")
    people = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    q = people.add_parser("list", help="everyone enrolled")
    _common(q)
    q = people.add_parser("show", help="one person's faces")
    q.add_argument("name")
    _common(q)
    q = people.add_parser("rename", help="rename a person")
    q.add_argument("name")
    q.add_argument("new_name")
    _common(q)
    q = people.add_parser("remove", help="forget a person and their faces")
    q.add_argument("name")
    _common(q)
    p.set_defaults(run=run_people)

    p = sub.add_parser("gallery", help="export, import or inspect a gallery")
    g = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    q = g.add_parser("export", help="write a portable file with every encoding and the encoder's name")
    q.add_argument("file")
    _common(q)
    q = g.add_parser("import", help="merge an exported file into the gallery")
    q.add_argument("file")
    _common(q)
    q = g.add_parser("info", help="location, encoder, people and faces")
    _common(q)
    q = g.add_parser("audit", help="the latest identify and verify calls")
    q.add_argument("--limit", type=int, default=20, help="how many of the latest calls to show")
    _common(q)
    p.set_defaults(run=run_gallery)

    p = sub.add_parser("cluster", help="group the faces of unlabelled photos by person, with a report",
                       description="Find every face in the photos under DIR, group them by person and "
                                   "write OUT/report.html, OUT/contact_sheet.png and OUT/clusters.json. "
                                   "Name clusters in clusters.json (or with enroll --name ID=NAME), or let "
                                   "--gallery name them after the people enrolled there, and enrol them "
                                   "with `visage enroll --clusters OUT/clusters.json`.")
    p.add_argument("folder", metavar="DIR")
    p.add_argument("--out", metavar="OUT", default="visage-clusters",
                   help="report folder (default: ./visage-clusters, in the folder you run from, not in DIR)")
    p.add_argument("--threshold", type=float, help="linkage distance (default: the encoder's calibration)")
    p.add_argument("--min-size", type=int, default=1, help="hide clusters smaller than this in the report")
    p.add_argument("--gallery", metavar="FILE", default=None,
                   help="name each cluster after the enrolled person most of its faces are identified as "
                        "(default: clusters stay unnamed)")
    add_encoder_option(p, default=None, default_help=f"the gallery's with --gallery, else {DEFAULT_ENCODER}")
    p.add_argument("--json", action="store_true", help="print JSON")
    add_calibration_option(p)
    p.set_defaults(run=run_cluster)


def _open(args, create: bool = False):
    """The gallery named by ``--gallery``; only commands that add people may start a new one."""
    from ..gallery import Gallery

    return Gallery(args.gallery, encoder=args.encoder, calibration=getattr(args, "calibration", None),
                   create=create)


def _print_report(report, as_json: bool, encoder: str | None) -> None:
    if as_json:
        print(json.dumps({**report.to_dict(), "encoder": encoder}, indent=2))
        return
    for photo, reason in report.skipped:
        print(f"skipped {photo}: {reason}")
    print(f"enrolled {report.faces_added} face(s) for {len(report.added)} person(s); "
          f"skipped {len(report.skipped)} photo(s); encoder {encoder}")


def run_enroll(args) -> int:
    modes = sum(bool(x) for x in (args.name or args.photos, args.folder, args.clusters))
    if modes != 1:
        raise GalleryError("give NAME PHOTO..., or --folder DIR, or --clusters FILE (exactly one)")
    with _open(args, create=True) as gallery:
        if args.folder:
            def said(name, report):
                # Printed only after the person is committed: what is printed is stored.
                if report.added:
                    print(f"enrolled {name}: {report.added[name]} face(s)", flush=True)

            report = gallery.enroll_folder(args.folder, progress=not args.json, on_person=said)
        elif args.clusters:
            from ..gallery.cluster import enroll_clusters

            report = enroll_clusters(gallery, Path(args.clusters), _parse_names(args.cluster_names))
        else:
            if not args.photos:
                raise GalleryError(f"no photos given for {args.name}")
            report = gallery.enroll(args.name, args.photos)
        encoder = gallery.stored_encoder_key
    _print_report(report, args.json, encoder)
    return 0 if report.faces_added or not report.skipped else 1


def _parse_names(pairs: list[str]) -> dict[int, str]:
    names = {}
    for pair in pairs:
        key, sep, name = pair.partition("=")
        if not sep or not key.strip().isdigit() or not name.strip():
            raise GalleryError(f"--name {pair!r}: expected ID=NAME, e.g. 3=Ada")
        names[int(key)] = name.strip()
    return names


def run_identify(args) -> int:
    from collections.abc import Iterable

    from ..batch import IdentifiedFace, Outcome, identify_photos

    sources = expand_sources(args.photos)
    one_input(args, sources)
    with _open(args) as gallery:
        gallery.detector = args.detector
        encoder = gallery.encoder_key
        if args.claim:
            if len(sources) != 1:
                raise GalleryError(f"--claim checks one photo, and {len(sources)} were given")
            found = gallery.verify(args.claim, sources[0], threshold=args.threshold, require_live=args.require_live)
            outcomes: Iterable[Outcome] = [Outcome(str(sources[0]), (IdentifiedFace(str(sources[0]), 1, found),),
                                               "ok" if found.known else "negative")]
        else:
            outcomes = identify_photos(gallery, sources, settings_of(args), top=args.top, threshold=args.threshold,
                                       match=args.match, require_live=args.require_live, **batch_kwargs(args))

        def as_object(o: Outcome) -> dict:
            return {"photo": o.source, "encoder": encoder, "embedding": gallery.encoder.name,
                    "faces": [r.result.to_dict() for r in records_of(o, IdentifiedFace)]}

        summary = print_outcomes(outcomes, args, IdentifiedFace.CSV_COLUMNS, faces_header(f", encoder {encoder}"),
                                 as_object=as_object, indent=2)
        if args.claim and not (args.json or args.csv or args.jsonl):
            from ..wording import claim_verdict

            print(f"  claim: {claim_verdict(args.claim, found.name, found.candidates[0].name)}")
    return EXIT_FOR[summary.worst]


def run_people(args) -> int:
    with _open(args) as gallery:
        if args.action == "list":
            people = gallery.people()
            if args.json:
                print(json.dumps([p.to_dict() for p in people], indent=2))
            else:
                for p in people:
                    print(f"{p.name}\t{p.faces} face(s)")
                print(f"{len(people)} person(s), {sum(p.faces for p in people)} face(s)")
        elif args.action == "show":
            faces = gallery.faces(args.name)
            if args.json:
                print(json.dumps({"name": args.name, "faces": [f.to_dict() for f in faces]}, indent=2))
            else:
                print(f"{args.name}: {len(faces)} face(s)")
                for f in faces:
                    print(f"  #{f.id} {f.record.source} quality {f.record.quality:.2f} sha256 {f.record.sha256[:12]}")
        elif args.action == "rename":
            gallery.rename(args.name, args.new_name)
            _say(args, {"renamed": args.name, "to": args.new_name}, f"renamed {args.name} to {args.new_name}")
        elif args.action == "remove":
            n = gallery.remove(args.name)
            _say(args, {"removed": args.name, "faces": n}, f"removed {args.name} ({n} face(s))")
    return 0


def _identify_threshold(gallery: Gallery) -> float | None:
    """The threshold identify would use now; None when the gallery's encoder has no calibration yet."""
    try:
        return gallery.threshold()
    except VisageError:
        return None


def _say(args, data: dict, text: str) -> None:
    print(json.dumps(data) if args.json else text)


def run_gallery(args) -> int:
    with _open(args, create=args.action == "import") as gallery:
        if args.action == "export":
            n = gallery.export(args.file)
            _say(args, {"exported": n, "file": args.file}, f"exported {n} face(s) to {args.file}")
        elif args.action == "import":
            report = gallery.import_file(args.file)
            _print_report(report, args.json, gallery.stored_encoder_key)
        elif args.action == "info":
            bound = gallery.store.encoder()
            people = gallery.people()
            info = {"location": gallery.location, "encoder": gallery.stored_encoder_key,
                    "embedding": bound[0] if bound else None, "dim": bound[1] if bound else None, "people": len(people),
                    "faces": sum(p.faces for p in people),
                    "identify_threshold": _identify_threshold(gallery) if bound else None}
            _say(args, info, "\n".join(f"{k}: {v}" for k, v in info.items()))
        elif args.action == "audit":
            rows = gallery.audit(args.limit)
            if args.json:
                print(json.dumps(rows, indent=2))
            else:
                import time

                for r in rows:
                    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r["time"]))
                    print(f"{when} {r['operation']:<8} {r['source']} {json.dumps(r['result'])}")
    return 0


def run_cluster(args) -> int:
    from ..gallery import Gallery
    from ..gallery.cluster import cluster_folder, name_clusters, write_report

    gallery = Gallery(args.gallery, create=False) if args.gallery else None
    try:
        encoder = args.encoder or (gallery.stored_encoder_key if gallery else None) or DEFAULT_ENCODER
        result = cluster_folder(args.folder, encoder=encoder, threshold=args.threshold,
                                calibration=args.calibration, progress=not args.json)
        named = name_clusters(result, gallery) if gallery else 0
    finally:
        if gallery:
            gallery.close()
    paths = write_report(result, args.out, min_size=args.min_size)
    if args.json:
        print(json.dumps({"clusters": len(result.clusters), "faces": result.face_count, "encoder": encoder,
                          "embedding": result.encoder, "threshold": result.threshold,
                          "names": {c.id: c.name for c in result.clusters if c.name},
                          "skipped": [{"photo": p, "reason": r} for p, r in result.skipped],
                          "files": {k: str(v) for k, v in paths.items()}}, indent=2))
    else:
        for photo, reason in result.skipped:
            print(f"skipped {photo}: {reason}", file=sys.stderr)
        sizes = ", ".join(str(len(c.members)) for c in result.clusters[:12])
        print(f"{result.face_count} face(s) in {len(result.clusters)} cluster(s) (sizes {sizes}"
              f"{', ...' if len(result.clusters) > 12 else ''}); encoder {encoder}, threshold {result.threshold:.4f}")
        for c in result.clusters if gallery else []:
            if c.name:
                print(f"cluster {c.id}: {c.name} ({len(c.members)} face(s))")
        if gallery:
            print(f"named {named} of {len(result.clusters)} cluster(s) after people in {args.gallery}")
        for k, v in paths.items():
            print(f"{k}: {v}")
    return 0
