"""Put a trained fast-style model into the package, with its model card.

Copies the model written by ``visage style-train`` to src/visage/data/styles/NAME.pt (weights as
float16 with --fp16, which :func:`visage.style.fast.load_style_model` loads as float32) and writes
NAME.json beside it: the style image and its licence, the content images it was trained on and
those held out, the settings, steps and time, and the style distances it reaches on held-out photos.

    .venv/bin/python scripts/ship_style_model.py /tmp/starry.pt --name starry --card-extra extra.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
if TYPE_CHECKING:
    from visage.style.fast import FastStyleSettings

DATA = Path(os.environ.get("VISAGE_DEV_DATA", ROOT.parent / "shared" / "data"))
#: Held-out photos the card's numbers are measured on (none of them, nor their identities, trained on).
MEASURE_ON = ["faces/facerec__obama/obama.jpg", "style/content/tubingen.jpg", "faces/openface__lennon/lennon-1.jpg"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="the model file from `visage style-train`")
    parser.add_argument("--name", required=True)
    parser.add_argument("--card-extra", help="a JSON file whose keys are added to the card (training data, licences)")
    parser.add_argument("--fp16", action="store_true", help="store the weights as float16")
    parser.add_argument("--size", type=int, default=256, help="long side the measured distances use (256)")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    from visage.media.images import load_image
    from visage.style import style_distance
    from visage.style.fast import load_style_model
    from visage.style.transfer import _resize_long

    model = load_style_model(args.model)
    # The card and the file keep no path of the machine the model was trained on.
    model.style = Path(model.style).name
    if model.settings.init_model is not None:
        model.settings = replace(model.settings, init_model=Path(model.settings.init_model).name)
    folder = ROOT / "src" / "visage" / "data" / "styles"
    folder.mkdir(parents=True, exist_ok=True)
    target = model.save(folder / f"{args.name}.pt")
    if args.fp16:
        payload = torch.load(target, weights_only=True)
        payload["state_dict"] = {k: v.half() if v.is_floating_point() else v for k, v in payload["state_dict"].items()}
        torch.save(payload, target)
    again = load_style_model(target)  # what users get

    style = DATA / "style/style/starry_night.jpg"
    measured = []
    for rel in MEASURE_ON:
        pixels = _resize_long(load_image(DATA / rel).pixels, args.size)
        before = style_distance(pixels, style, size=args.size, network="vgg16-hed")
        after = style_distance(again.apply_pixels(pixels), style, size=args.size, network="vgg16-hed")
        measured.append({"image": rel, "size": args.size, "style_distance_unstyled": before, "style_distance_fast": after,
                             "ratio": after / before})
        print(f"{rel}: style distance {before:.4g} → {after:.4g} ({after / before:.3f}×)")
    history = model.history
    card = {
        "name": args.name, "file": target.name, "bytes": target.stat().st_size,
        "weights": "float16" if args.fp16 else "float32",
        "network": _describe(model.settings),
        "loss_network": model.feature_network,
        "training": {"settings": asdict(model.settings), "steps": len(history),
                      "seconds": history[-1]["seconds"] if history else None,
                      "images_seen": len(history) * model.settings.batch_size,
                      "first_losses": history[0] if history else None,
                      "last_losses_mean_of_50": {k: sum(e[k] for e in history[-50:]) / len(history[-50:])
                                              for k in ("content", "style", "total")} if history else None},
        "measured": {"what": "style_distance (visage.style.style_distance: Gatys' layers relu1_1..relu5_1 "
                           "weighted 1/n_C², vgg16-hed) to starry_night.jpg, both at long side 256; ratio = fast / "
                           "unstyled photo", "photos": measured},
    }
    if args.card_extra:
        card.update(json.loads(Path(args.card_extra).read_text()))
    (folder / f"{args.name}.json").write_text(json.dumps(card, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {target} ({target.stat().st_size / 2**20:.2f} MiB) and {args.name}.json")


def _describe(settings: FastStyleSettings) -> str:
    """The card's one-line description of the network."""
    parts = [f"width {settings.width}", f"{settings.n_residual} residual blocks", "instance norm", "global residual"]
    if settings.noise_channels:
        parts.append(f"{settings.noise_channels} noise channels")
    if settings.output_norm:
        parts.append("output colours normalised to a learnt mean and spread")
    return f"Johnson et al. 2016 transformer ({', '.join(parts)}), visage.style.fast.TransformerNet"


if __name__ == "__main__":
    main()
