"""The ``visage`` command. Each module in this package adds its subcommands with ``register``.

A module here holds only argument parsing and printing; the work is done by the library.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from ..errors import SpoofError, VisageError

#: Exit status for errors, as ``cmp`` uses: 0 same / success, 1 different, 2 trouble.
EXIT_ERROR = 2
#: Exit status when ``--require-live`` refused the input (an attack, or no proof of a live face).
EXIT_REFUSED = 4


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="visage", description="Face recognition, liveness, style transfer "
                                     "and ConvNet introspection.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help()
        return EXIT_ERROR
    try:
        return int(args.run(args) or 0)
    except SpoofError as exc:
        print(f"visage: refused: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    except VisageError as exc:
        print(f"visage: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("visage: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
