"""The ``visage`` command. Each module in this package adds its subcommands with ``register``.

A module here holds only argument parsing and printing; the work is done by the library.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys

from ..errors import SpoofError, StorageFull, VisageError

#: Exit status for errors, as ``cmp`` uses: 0 same / success, 1 different, 2 trouble.
EXIT_ERROR = 2
#: Exit status when ``--require-live`` refused the input (an attack, or no proof of a live face).
EXIT_REFUSED = 4
#: Exit status when a write failed because the disk (or quota) is full: retrying after freeing space may work.
EXIT_STORAGE_FULL = 5
#: Printed once per run that uses dlib's CNN detector without CUDA (measured: 9.9 s against HOG's
#: 1.1 s on skimage's astronaut, 2 cores).
MMOD_ON_CPU = ("visage: warning: --detector mmod runs dlib's CNN on the CPU: several seconds a photo, "
               "about 10 times hog (the default)")


def version() -> str:
    """The installed package's version (its metadata), or the source's when it is not installed."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("visage")
    except PackageNotFoundError:
        from .. import __version__

        return __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="visage", description="Face recognition, liveness, style transfer "
                                     "and ConvNet introspection.")
    parser.add_argument("--version", action="version", version=f"visage {version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(sub)
    show_defaults(parser)
    return parser


def subparsers(parser: argparse.ArgumentParser) -> list[tuple[str, argparse.ArgumentParser]]:
    """Every command's parser, nested ones too, as ("people list", parser), depth first."""
    found: list[tuple[str, argparse.ArgumentParser]] = []
    seen: set[int] = set()  # an alias maps to the same parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                if id(child) in seen:
                    continue
                seen.add(id(child))
                found.append((name, child))
                found += [(f"{name} {n}", p) for n, p in subparsers(child)]
    return found


def show_defaults(parser: argparse.ArgumentParser) -> None:
    """Append ``(default: VALUE)`` to each option's help that has a value as default and does not
    already say it. One place for every command, so no flag's default goes unstated; flags without
    a default value (None, or off for a switch) describe their fallback in their own words."""
    for _, p in [("", parser), *subparsers(parser)]:
        for action in p._actions:
            if not action.option_strings or action.help in (None, argparse.SUPPRESS):
                continue
            if action.default in (None, False, argparse.SUPPRESS) or "default" in action.help:
                continue
            action.help += " (default: %(default)s)"


def _warn_about_slow_detector(args: argparse.Namespace) -> None:
    if getattr(args, "detector", None) != "mmod":
        return
    import dlib

    if not getattr(dlib, "DLIB_USE_CUDA", False):
        print(MMOD_ON_CPU, file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help()
        return EXIT_ERROR
    _warn_about_slow_detector(args)
    try:
        status = int(args.run(args) or 0)
        sys.stdout.flush()  # here, not at exit: a closed pipe is then caught below
        return status
    except BrokenPipeError:
        # The reader left (`visage people list | head -1`): that is its choice, not a failure, so
        # exit 0 quietly, as `set -o pipefail` scripts expect. stdout points at devnull so that
        # Python's own flush at exit does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except SpoofError as exc:
        print(f"visage: refused: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    except StorageFull as exc:
        print(f"visage: error: {exc}", file=sys.stderr)
        return EXIT_STORAGE_FULL
    except VisageError as exc:
        print(f"visage: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except ModuleNotFoundError as exc:
        from ..extras import missing_extra

        missing = missing_extra(exc)
        if missing is None:
            raise
        print(f"visage: error: {missing}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("visage: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
