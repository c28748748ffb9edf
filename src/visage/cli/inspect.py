"""``visage inspect``: what the units of a network respond to (top patches, or maximising images)."""

from __future__ import annotations

import argparse
import sys

from ..errors import VisageError


def register(sub) -> None:
    p = sub.add_parser(
        "inspect", help="show what a network's units respond to: top image patches per unit, or maximising images",
        description="Top-activating image patches per unit for several layers in one pass (an HTML report with a "
                    "grid PNG per layer), or with --maximize, images drawn by gradient ascent to drive each unit.")
    p.add_argument("--model", default="vgg16",
                   help="vgg16, a PyTorch face encoder's name, or the path of a saved PyTorch model (default: vgg16)")
    p.add_argument("--layers", "--layer", dest="layers", metavar="NAMES",
                   help="comma-separated layer names, e.g. conv1_2,conv3_3,conv5_3 (default: an early, a middle "
                        "and the last convolution whose receptive field fits in the input; --maximize takes one)")
    p.add_argument("--images", metavar="DIR", help="folder (or file) of images to search for patches")
    p.add_argument("-o", "--output", metavar="PATH",
                   help="report folder (default inspect-report/), or with --maximize the PNG (default maxact.png)")
    p.add_argument("--units", metavar="LIST", help="unit indices, e.g. 0-15 or 3,7,12-15 (default: the 9 strongest "
                                                    "units for patches, 0-15 for --maximize)")
    p.add_argument("--top", type=int, default=9, metavar="N", help="how many units per layer to show (default 9)")
    p.add_argument("--per-unit", type=int, default=9, metavar="K", help="patches per unit (default 9)")
    p.add_argument("--image-size", type=int, metavar="PX",
                   help="side the images are resized and centre-cropped to (default: the model's input size)")
    faces = p.add_mutually_exclusive_group()
    faces.add_argument("--faces", dest="face_chips", action="store_true", default=None,
                       help="use the aligned chips of the faces found in the images (default for face encoders)")
    faces.add_argument("--no-faces", dest="face_chips", action="store_false", help="use the whole images")
    p.add_argument("--batch-size", type=int, default=16, metavar="N", help="images per forward pass (default 16)")
    p.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:1, mps (default cpu)")
    p.add_argument("--input-size", type=int, metavar="PX", help="input size of a user's model (default 224)")
    p.add_argument("--normalize", choices=["none", "imagenet"],
                   help="input standardisation a user's model was trained with (default none: RGB in [0, 1])")
    p.add_argument("--list-layers", action="store_true", help="print the layers with their receptive fields and stop")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    m = p.add_argument_group("activation maximisation (--maximize)")
    m.add_argument("--maximize", action="store_true", help="draw an image per unit by gradient ascent on the input")
    m.add_argument("--size", type=int, default=128, metavar="PX", help="side of each image (default 128)")
    m.add_argument("--steps", type=int, default=200, help="optimisation steps (default 200)")
    m.add_argument("--lr", type=float, default=0.05, help="Adam learning rate (default 0.05)")
    m.add_argument("--param", dest="parametrization", choices=["fourier", "pixel"], default="fourier",
                   help="decorrelated Fourier parametrisation, or pixels blurred every few steps (default fourier)")
    m.add_argument("--objective", choices=["channel", "neuron"], default="channel",
                   help="maximise the unit's mean over all positions, or at the centre only (default channel)")
    m.add_argument("--jitter", type=int, default=4, metavar="PX", help="random shift per step (default 4)")
    m.add_argument("--seed", type=int, default=0, help="random seed of the starting image")
    p.set_defaults(run=run)


def parse_units(text: str) -> list[int]:
    """``"0-3,7"`` → [0, 1, 2, 3, 7]."""
    units: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            if "-" in part:
                lo, hi = (int(v) for v in part.split("-", 1))
                if hi < lo:
                    raise ValueError
                units.extend(range(lo, hi + 1))
            else:
                units.append(int(part))
        except ValueError:
            raise VisageError(f"--units: cannot read {part!r}; write unit indices like 0-15 or 3,7,12") from None
    if not units:
        raise VisageError("--units: no unit given")
    return units


def run(args: argparse.Namespace) -> int:
    from ..introspect import inspect_images, maximize, resolve_model, save_maximized

    target = resolve_model(args.model, input_size=args.input_size, normalize=args.normalize)
    layers = [name.strip() for name in args.layers.split(",") if name.strip()] if args.layers else None
    if args.list_layers:
        _print_layers(target)
        return 0
    units = parse_units(args.units) if args.units else None
    progress = not args.quiet
    if args.maximize:
        if layers is not None and len(layers) != 1:
            raise VisageError("--maximize takes one layer")
        layer = layers[0] if layers else target.default_layers()[-1]
        result = maximize(target, layer, units if units is not None else range(16), size=args.size,
                          steps=args.steps, lr=args.lr, parametrization=args.parametrization,
                          objective=args.objective, jitter_px=args.jitter, seed=args.seed, device=args.device,
                          progress=progress)
        path = save_maximized(result, args.output or "maxact.png")
        for u, s, f in zip(result.units, result.start, result.final):
            print(f"unit {u:4d}: {s:10.3g} -> {f:10.3g}")
        print(f"wrote {path}")
        return 0
    if not args.images:
        raise VisageError("give --images DIR (a folder of images to search), or --maximize")
    index = inspect_images(target, args.images, args.output or "inspect-report", layers,
                           units=units if units is not None else args.top, per_unit=args.per_unit,
                           image_size=args.image_size, face_chips=args.face_chips, batch_size=args.batch_size,
                           device=args.device, progress=progress,
                           warn=lambda note: print(f"visage: warning: {note}", file=sys.stderr))
    print(f"wrote {index}")
    return 0


def _print_layers(target) -> None:
    print(f"{'layer':<32} {'kind':<18} {'units':>6} {'grid':>9}  receptive field")
    for name, info in target.layers().items():
        grid = "x".join(str(s) for s in info.shape[2:]) or "-"
        field = info.field.describe() if info.field is not None else f"unknown: {info.reason}"
        print(f"{name:<32} {info.kind:<18} {info.channels:>6} {grid:>9}  {field}")
