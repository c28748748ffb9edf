"""Neural style transfer: Gatys optimisation (:func:`stylize`) and Johnson's fast feed-forward
networks (:func:`train_style_model`, :func:`load_style_model`, :class:`StyleModel`)."""

from .transfer import (
    StyleResult,
    StyleSettings,
    parse_style_layers,
    style_distance,
    stylize,
)

__all__ = ["StyleResult", "StyleSettings", "parse_style_layers", "style_distance", "stylize"]
