"""Train face encoders the FaceNet way: triplet loss, online mining, P×K batches, held-out validation.

The same trainer trains projection heads on frozen encodings, fine-tunes FaceNet, and trains
small Conv1d/Conv2d/Conv3d encoders on signals, images and clips. See ``docs/training.md``.
"""

from .losses import (
    DEFAULT_MARGIN,
    l2_normalize,
    squared_distances,
    triplet_loss,
    triplet_losses,
)
from .mining import MINERS, batch_all, batch_hard, get_miner, semi_hard
from .nets import ConvEncoder, ProjectionHead
from .run import train_folder
from .trained import (
    TrainedFaceEncoder,
    TrainedModel,
    load_trained,
    load_trained_encoder,
)
from .trainer import TrainConfig, TrainResult, TripletTrainer, validation_metrics

__all__ = [
    "DEFAULT_MARGIN",
    "MINERS",
    "ConvEncoder",
    "ProjectionHead",
    "TrainConfig",
    "TrainResult",
    "TrainedFaceEncoder",
    "TrainedModel",
    "TripletTrainer",
    "batch_all",
    "batch_hard",
    "get_miner",
    "l2_normalize",
    "load_trained",
    "load_trained_encoder",
    "semi_hard",
    "squared_distances",
    "train_folder",
    "triplet_loss",
    "triplet_losses",
    "validation_metrics",
]

