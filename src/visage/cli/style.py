"""``visage style`` and ``visage style-train``: neural style transfer, by optimisation or with a
trained fast-style model."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import VisageError

#: Output formats by suffix. PNG also carries the settings as text chunks; JPEG does not.
OUTPUT_SUFFIXES = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}
#: Seconds one L-BFGS step (a loss and its gradient through VGG16) takes per megapixel of output
#: on 2 CPU threads: 3.1 s at 512×512 px, measured on this project's 2-core machine.
SECONDS_PER_MEGAPIXEL_STEP = 11.8
MEASURED_THREADS = 2
#: A run expected to take longer than this says so before it starts.
LONG_RUN_SECONDS = 30.0
#: Steps of `visage style` when --steps is not given: about 5 minutes at 512 px on 2 cores, and most
#: of the way down the loss curve (docs/style.md: the loss after 100 evaluations is 0.46 of its
#: value at 50, after 300 it is 0.31).
DEFAULT_STEPS = 100


def register(sub) -> None:
    p = sub.add_parser(
        "style", help="render a photo in the style of a painting (Gatys), or apply a trained fast-style model",
        description="visage style CONTENT STYLE [STYLE ...] -o out.png   (Gatys optimisation)\n"
                    "visage style --model style.pt CONTENT -o out.png    (fast model; CONTENT may be a video)\n"
                    "visage style --model starry CONTENT -o out.jpg      (a shipped fast model, by name)\n"
                    "visage style --list-models                          (the shipped fast models)\n\n"
                    "The output is PNG or JPEG by its suffix (.png, .jpg, .jpeg); PNG keeps the settings "
                    "as metadata. A long run on the CPU states its estimated time first.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("images", nargs="*", metavar="IMAGE", help="the content image, then one or more style images")
    p.add_argument("-o", "--output", default=None,
                   help="output .png, .jpg or .jpeg (or a video, with --model and a video input); required")
    p.add_argument("--model", help="a fast-style model: a file from `visage style-train`, or the name of a shipped "
                   "one (see --list-models); one forward pass, no style image")
    p.add_argument("--list-models", action="store_true", help="list the shipped fast-style models and exit")
    p.add_argument("--size", type=int, default=None, help="long side of the output in pixels (default 512; "
                   "with --model the input's own size)")
    p.add_argument("--content-weight", type=float, default=1.0, help="α (default 1)")
    p.add_argument("--style-weight", type=float, default=None, help="β (default 1)")
    p.add_argument("--tv-weight", type=float, default=0.0, help="total-variation weight (default 0)")
    p.add_argument("--style-layers", default=None, metavar="L:W,...",
                   help="style layers with weights λ, e.g. relu1_1:0.2,relu2_1:0.2,relu3_1:0.2 "
                        "(default relu1_1..relu5_1 weighted 1/n_C²)")
    p.add_argument("--content-layer", default=None, help="content layer (default relu4_2)")
    p.add_argument("--style-blend", default=None, metavar="W,...",
                   help="blend weights for several style images, e.g. 0.7,0.3 (default equal)")
    p.add_argument("--style-scale", type=float, default=1.0, help="style image size relative to the output")
    p.add_argument("--init", choices=["content", "noise"], default="content", help="start from the content or noise")
    p.add_argument("--optimizer", choices=["lbfgs", "adam"], default="lbfgs", help="the pixel optimiser")
    p.add_argument("--lr", type=float, default=None, help="Adam learning rate for pixels in [0, 1] (default 0.02)")
    p.add_argument("--steps", type=int, default=DEFAULT_STEPS,
                   help=f"steps at the coarsest size (default {DEFAULT_STEPS}: about 5 minutes at 512 px on 2 CPU "
                        "cores; 300 goes further down the loss curve)")
    p.add_argument("--fine-steps", type=int, default=None, help="steps at each finer size (default: half the previous)")
    p.add_argument("--coarse-size", type=int, default=512, help="coarse-to-fine starts at this long side (default 512)")
    p.add_argument("--preserve-color", action="store_true", help="transfer luminance only; keep the content's colours")
    p.add_argument("--network", choices=["auto", "vgg16-hed", "vgg19"], default="auto",
                   help="feature network (auto: torchvision's VGG19 if in the torch cache, else VGG16-HED)")
    p.add_argument("--save-every", type=int, default=0, metavar="N",
                   help="write an intermediate frame every N steps (default 0: none)")
    p.add_argument("--frames-dir", default=None, help="folder for the frames (default: OUTPUT_frames/)")
    p.add_argument("--seed", type=int, default=0, help="random seed (noise init, Adam)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: all this process may use)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=run_style)

    t = sub.add_parser("style-train", help="train a fast feed-forward style network (Johnson et al.) for one style")
    t.add_argument("style", help="the style image")
    t.add_argument("--images", required=True, help="folder of training photos (searched recursively)")
    t.add_argument("-o", "--output", required=True, help="model file to write, e.g. style.pt")
    t.add_argument("--image-size", type=int, default=256, help="training crops are this many pixels square")
    t.add_argument("--crop-size", type=int, default=None,
                   help="train on random squares this big cut from photos resized to short side --image-size")
    t.add_argument("--batch-size", type=int, default=4, help="crops per optimiser step")
    t.add_argument("--epochs", type=int, default=2, help="passes over the training photos")
    t.add_argument("--max-steps", type=int, default=None, help="stop after this many steps (default: all epochs)")
    t.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    t.add_argument("--content-weight", type=float, default=None, help="α (default 1)")
    t.add_argument("--style-weight", type=float, default=None, help="β (default 10)")
    t.add_argument("--tv-weight", type=float, default=None, help="total-variation weight (default 0)")
    t.add_argument("--style-layers", default=None, metavar="L:W,...",
                   help="style layers with weights λ (default relu1_2, relu2_2, relu3_3, relu4_3 weighted 1/n_C²)")
    t.add_argument("--content-layer", default=None, help="content layer (default relu2_2)")
    t.add_argument("--style-size", type=int, default=None,
                   help="long side the style image is resized to (default: --image-size)")
    t.add_argument("--width", type=int, default=None,
                   help="channels of the first layer (default 32 as in the paper, or --init-model's)")
    t.add_argument("--noise-channels", type=int, default=None,
                   help="noise channels fed beside RGB, so strokes can be painted on flat regions "
                        "(default 0, or --init-model's)")
    t.add_argument("--output-norm", action="store_true",
                   help="normalise the output's colours to a learnt mean and spread per channel, starting at the "
                        "style image's, so the palette is the style's whatever the photo's (on with an "
                        "--init-model trained so)")
    t.add_argument("--init-model", default=None, metavar="MODEL",
                   help="fine-tune: start from this model (a file or a shipped style's name), not random weights")
    t.add_argument("--network", choices=["auto", "vgg16-hed", "vgg19"], default="auto",
                   help="loss network (auto: torchvision's VGG19 if in the torch cache, else VGG16-HED)")
    t.add_argument("--seed", type=int, default=0, help="random seed (weights, crops)")
    t.add_argument("--checkpoint", default=None, metavar="FILE",
                   help="write the training state here every --checkpoint-every steps (and at the end)")
    t.add_argument("--checkpoint-every", type=int, default=50, metavar="N", help="steps between checkpoints (50)")
    t.add_argument("--resume", action="store_true",
                   help="continue from --checkpoint when it exists (same settings; --max-steps/--epochs may grow)")
    t.add_argument("--threads", type=int, default=None, help="CPU threads (default: all this process may use)")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.set_defaults(run=run_train)


def output_format(path: Path) -> str:
    """"PNG" or "JPEG" by the suffix of ``path``; an unknown suffix is refused before any work."""
    try:
        return OUTPUT_SUFFIXES[path.suffix.lower()]
    except KeyError:
        raise VisageError(f"{path}: write .png or .jpg (or .jpeg); {path.suffix or 'no suffix'} "
                          "is not an image format visage writes") from None


def save_image(pixels, path: Path, metadata: dict[str, str]) -> None:
    """Write RGB uint8 ``pixels`` in the format of ``path``'s suffix; PNG keeps ``metadata``."""
    from PIL import Image as PILImage

    from ..style.transfer import save_png

    if output_format(path) == "PNG":
        save_png(pixels, path, metadata)
    else:
        PILImage.fromarray(pixels).save(path, "JPEG", quality=95)


def estimated_seconds(settings, content_size: tuple[int, int]) -> float:
    """Seconds the optimisation should take on the CPU, from the output's pixels at each
    coarse-to-fine level × its steps × :data:`SECONDS_PER_MEGAPIXEL_STEP`, scaled by threads.
    ``content_size`` is the content image's (width, height)."""
    import torch

    aspect = min(content_size) / max(content_size)
    sizes = settings.level_sizes()
    megapixel_steps = sum(long * long * aspect / 1e6 * steps
                          for long, steps in zip(sizes, settings.level_steps(len(sizes))))
    threads = settings.threads or torch.get_num_threads()
    return megapixel_steps * SECONDS_PER_MEGAPIXEL_STEP * MEASURED_THREADS / max(threads, 1)


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


def run_style(args) -> int:
    from ..media.video import is_video
    from ..style import StyleSettings, parse_style_layers, stylize
    from ..style.fast import load_style_model

    if args.list_models:
        return _list_models()
    if not args.images:
        raise VisageError("give a content image (and style images, or --model); see `visage style --help`")
    if not args.output:
        raise VisageError("give the output file with -o/--output")
    output = Path(args.output)
    if args.model:
        if len(args.images) != 1:
            raise VisageError("with --model give exactly one content image or video (the style is in the model)")
        source = args.images[0]
        if is_video(source):
            model = load_style_model(args.model)
            count = model.stylize_video(source, args.output, size=args.size, progress=not args.quiet)
            print(f"wrote {args.output} ({count} frames, style of {model.style})")
            return 0
        output_format(output)
        model = load_style_model(args.model)
        save_image(model.apply(source, size=args.size), output, model.metadata())
        print(f"wrote {args.output} (style of {model.style}, {model.feature_network} losses)")
        return 0

    if len(args.images) < 2:
        raise VisageError("give a content image and at least one style image (or --model)")
    output_format(output)
    settings = StyleSettings(
        size=args.size if args.size is not None else 512, content_weight=args.content_weight,
        tv_weight=args.tv_weight, init=args.init, optimizer=args.optimizer, steps=args.steps,
        fine_steps=args.fine_steps, coarse_size=args.coarse_size, preserve_color=args.preserve_color,
        style_scale=args.style_scale, network=args.network, seed=args.seed, threads=args.threads,
        save_every=args.save_every,
        frames_dir=args.frames_dir or (str(output.with_name(output.stem + "_frames")) if args.save_every else None),
    )
    if args.style_weight is not None:
        settings.style_weight = args.style_weight
    if args.lr is not None:
        settings.lr = args.lr
    if args.style_layers:
        settings.style_layers = parse_style_layers(args.style_layers)
    if args.content_layer:
        settings.content_layer = args.content_layer
    if settings.frames_dir:
        Path(settings.frames_dir).mkdir(parents=True, exist_ok=True)
    blend = _parse_floats(args.style_blend) if args.style_blend else None
    settings.validate()  # a bad setting is refused before the time it would take is estimated
    _say_how_long(settings, args.images[0])
    result = stylize(args.images[0], args.images[1:], settings, style_blend=blend, progress=not args.quiet)
    save_image(result.pixels, output, result.metadata())
    h, w = result.pixels.shape[:2]
    print(f"wrote {output} ({w}×{h}, {result.network}, final loss {result.final_loss:.4g}, {result.seconds:.0f} s)")
    return 0


def _list_models() -> int:
    from ..style.fast import shipped_style_models

    models = shipped_style_models()
    if not models:
        print("no fast-style models ship with this install")
        return 0
    for m in models:
        print(f"{m.name}\tstyle image {m.style_image} ({m.licence})\t{m.path}")
    print("use one with: visage style --model NAME photo.jpg -o out.jpg")
    return 0


def _say_how_long(settings, content: str) -> None:
    """Before a long CPU run, print its estimated time (stderr) and how to shorten it."""
    import sys

    from ..media.images import load_image

    if settings.device != "cpu":
        return
    image = load_image(content)
    seconds = estimated_seconds(settings, (image.width, image.height))
    if seconds >= LONG_RUN_SECONDS:
        print(f"visage: style transfer at {settings.size} px, {settings.steps} steps: about {_duration(seconds)} "
              "on this CPU (fewer --steps or a smaller --size is quicker)", file=sys.stderr, flush=True)


def run_train(args) -> int:
    from ..style.fast import FastStyleSettings, load_style_model, train_style_model
    from ..style.transfer import parse_style_layers

    # Fine-tuning takes the network's shape from the model it starts from unless told otherwise.
    start = load_style_model(args.init_model).settings if args.init_model else FastStyleSettings()
    width = args.width if args.width is not None else start.width
    noise_channels = args.noise_channels if args.noise_channels is not None else start.noise_channels
    settings = FastStyleSettings(image_size=args.image_size, batch_size=args.batch_size, epochs=args.epochs,
                                 max_steps=args.max_steps, lr=args.lr, width=width, network=args.network,
                                 seed=args.seed, threads=args.threads, style_size=args.style_size,
                                 crop_size=args.crop_size, noise_channels=noise_channels,
                                 output_norm=args.output_norm or start.output_norm, init_model=args.init_model)
    for name in ("content_weight", "style_weight", "tv_weight", "content_layer"):
        if getattr(args, name) is not None:
            setattr(settings, name, getattr(args, name))
    if args.style_layers:
        settings.style_layers = parse_style_layers(args.style_layers)
    output = Path(args.output)
    if not output.parent.is_dir():
        raise VisageError(f"{output.parent}: folder does not exist")
    if args.resume and not args.checkpoint:
        raise VisageError("--resume needs --checkpoint FILE")
    model = train_style_model(args.style, args.images, settings, progress=not args.quiet,
                              checkpoint=args.checkpoint, checkpoint_every=args.checkpoint_every, resume=args.resume)
    model.save(output)
    first, last = model.history[0]["total"], model.history[-1]["total"]
    print(f"wrote {output} ({len(model.history)} steps, loss {first:.4g} → {last:.4g}, {model.feature_network})")
    return 0


def _parse_floats(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise VisageError(f"not a list of numbers: {text!r}") from None
