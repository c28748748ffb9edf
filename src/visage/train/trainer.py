"""The triplet trainer: P×K batches, online mining, validation on held-out people, early stopping.

:class:`TripletTrainer` trains any ``torch.nn.Module`` that maps a batch of inputs to embeddings:
a projection head on frozen face encodings, FaceNet's Inception-ResNet-v1 on face chips, or a
:class:`~visage.train.nets.ConvEncoder` on signals (1D), images (2D) or volumes and clips (3D).
:func:`train_folder` is the whole job behind ``visage train``: read a folder of people, prepare
the inputs for the chosen mode, train, and save the best model.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import VisageError
from ..evaluation.metrics import verification_report
from .losses import l2_normalize, triplet_loss
from .mining import get_miner

log = logging.getLogger(__name__)

#: What ``visage train --mode`` accepts.
MODES = ("head", "finetune", "conv")
FORMAT = "visage-trained-v1"
#: Validation pairs scored at most (all same-person pairs are kept; different-person ones sampled).
MAX_VALIDATION_PAIRS = 20_000


@dataclass
class TrainConfig:
    """Settings of one training run (stored in checkpoints; a resumed run must keep them)."""

    epochs: int = 30
    people_per_batch: int = 8
    per_person: int = 4
    batches_per_epoch: int | None = None
    miner: str = "semihard"
    margin: float = 0.2
    lr: float = 1e-3
    weight_decay: float = 0.0
    #: L2-SP: pull the trained weights towards where they started (pretrained weights, an identity
    #: head) with this strength, instead of towards zero. Guards small data sets against overfitting.
    l2_sp: float = 0.0
    #: Epochs without a better validation score before training stops.
    patience: int = 5
    #: False-accept rate at which validation measures the true-accept rate (the score that is watched).
    far: float = 1e-2
    seed: int = 0
    device: str = "cpu"
    eval_batch: int = 128


@dataclass
class EpochLog:
    """One epoch: mean training loss, mining counts, validation metrics and speed."""

    epoch: int
    loss: float
    triplets: int
    active: int
    samples_per_s: float
    seconds: float
    validation: dict = field(default_factory=dict)


@dataclass
class TrainResult:
    """What :meth:`TripletTrainer.fit` returns: the per-epoch history and the best epoch."""

    history: list[EpochLog]
    best_epoch: int
    best_validation: dict
    stopped_early: bool

    def to_dict(self) -> dict:
        return {"best_epoch": self.best_epoch, "best_validation": self.best_validation,
                "stopped_early": self.stopped_early, "history": [asdict(h) for h in self.history]}


Transform = Callable[[np.ndarray], torch.Tensor]


def _default_transform(x: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(x, dtype=torch.float32)


def validation_metrics(embeddings: np.ndarray, labels: np.ndarray, far: float, seed: int = 0) -> dict:
    """Verification on all pairs of held-out samples: AUC, EER, TAR@FAR and 10-fold accuracy
    (the accuracy on balanced pairs: every same-person pair and as many different-person ones).

    Distances are Euclidean between L2-normalised embeddings. Large sets keep every same-person
    pair and a random sample of different-person pairs (:data:`MAX_VALIDATION_PAIRS` in all).
    """
    from ..evaluation.verification import cross_validated_accuracy

    e = embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)
    i, j = np.triu_indices(len(e), 1)
    same = labels[i] == labels[j]
    if len(i) > MAX_VALIDATION_PAIRS:
        rng = np.random.default_rng(seed)
        diff = np.flatnonzero(~same)
        keep_diff = rng.choice(diff, size=max(MAX_VALIDATION_PAIRS - int(same.sum()), 1), replace=False)
        keep = np.sort(np.concatenate([np.flatnonzero(same), keep_diff]))
        i, j, same = i[keep], j[keep], same[keep]
    d = np.linalg.norm(e[i] - e[j], axis=1)
    report = verification_report(-d, same, fars=sorted({far, 1e-2, 1e-3}, reverse=True))
    # Accuracy as in LFW: on as many same-person as different-person pairs (chance is 0.5), at
    # most 3000 in all, since best_threshold is quadratic in the number of pairs.
    rng = np.random.default_rng(seed)
    pos, neg = np.flatnonzero(same), np.flatnonzero(~same)
    n = min(len(pos), len(neg), 1500)
    balanced = np.concatenate([rng.choice(pos, n, replace=False), rng.choice(neg, n, replace=False)])
    report["accuracy"] = round(cross_validated_accuracy(d[balanced], same[balanced]), 6)
    return report


class TripletTrainer:
    """Trains ``net`` with the triplet loss on (inputs, labels), validating on held-out people.

    ``train_x``/``val_x`` are numpy arrays whose first axis indexes samples; ``transform`` turns a
    slice of them into the network's input tensor (default: float32 as is). ``augment`` (optional)
    changes a training input batch tensor in place of it. Only parameters with ``requires_grad``
    are optimised; modules whose parameters are all frozen stay in eval mode.
    """

    def __init__(self, net: nn.Module, train_x: np.ndarray, train_y: np.ndarray, val_x: np.ndarray,
                 val_y: np.ndarray, config: TrainConfig | None = None, *, transform: Transform | None = None,
                 augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 checkpoint: str | Path | None = None, meta: dict | None = None):
        from .data import PKSampler

        self.config = config or TrainConfig()
        self.device = torch.device(self.config.device)
        self.net = net.to(self.device)
        self.train_x, self.train_y = train_x, np.asarray(train_y)
        self.val_x, self.val_y = val_x, np.asarray(val_y)
        self.transform = transform or _default_transform
        self.augment = augment
        self.checkpoint = Path(checkpoint) if checkpoint else None
        self.meta = meta or {}
        self.miner = get_miner(self.config.miner)
        self.sampler = PKSampler(self.train_y, self.config.people_per_batch, self.config.per_person,
                                 self.config.batches_per_epoch, seed=self.config.seed)
        params = [p for p in self.net.parameters() if p.requires_grad]
        if not params:
            raise VisageError("the network has no trainable parameters")
        self.optimizer = torch.optim.Adam(params, lr=self.config.lr, weight_decay=self.config.weight_decay)
        self._start = [(p, p.detach().clone()) for p in params] if self.config.l2_sp > 0 else []

    # -- embedding --------------------------------------------------------------------------------
    def _train_mode(self) -> None:
        self.net.train()
        for module in self.net.modules():
            own = list(module.parameters(recurse=False))
            if own and not any(p.requires_grad for p in own):
                module.eval()  # frozen layers keep their batch-norm statistics and no dropout

    def embed(self, x: np.ndarray) -> np.ndarray:
        """L2-normalised embeddings (N, D) float32 of raw inputs ``x``, in eval mode."""
        was_training = self.net.training
        self.net.eval()
        out = []
        try:
            with torch.inference_mode():
                for start in range(0, len(x), self.config.eval_batch):
                    batch = self.transform(x[start:start + self.config.eval_batch]).to(self.device)
                    out.append(l2_normalize(self.net(batch)).float().cpu().numpy())
        finally:
            self.net.train(was_training)
        return np.concatenate(out) if out else np.zeros((0, 0), np.float32)

    def validate(self) -> dict:
        """:func:`validation_metrics` of the held-out people under the current weights."""
        return validation_metrics(self.embed(self.val_x), self.val_y, self.config.far, self.config.seed)

    def _score(self, validation: dict) -> tuple[float, float]:
        # TAR at the chosen FAR is what users care about; AUC breaks its frequent ties on small sets.
        return validation[f"tar@far={self.config.far:g}"], validation["auc"]

    # -- training ---------------------------------------------------------------------------------
    def train_epoch(self, epoch: int, progress: bool = True) -> EpochLog:
        """One pass of P×K batches; returns its :class:`EpochLog` (without validation)."""
        from tqdm import tqdm

        self._train_mode()
        losses, triplets, active, seen = [], 0, 0, 0
        start = time.perf_counter()
        bar = tqdm(self.sampler, desc=f"epoch {epoch}/{self.config.epochs}", unit="batch",
                   disable=not progress, leave=False)
        for batch in bar:
            index = np.asarray(batch)
            x = self.transform(self.train_x[index]).to(self.device)
            if self.augment is not None:
                x = self.augment(x)
            y = torch.as_tensor(self.train_y[index], device=self.device)
            embeddings = self.net(x)
            chosen = self.miner(embeddings.detach(), y, self.config.margin)
            average_over = "active" if self.config.miner == "all" else "all"
            loss, stats = triplet_loss(embeddings, chosen, self.config.margin, average_over)
            self.optimizer.zero_grad(set_to_none=True)
            total = loss
            if self._start:
                total = loss + self.config.l2_sp * sum(((p - p0) ** 2).sum() for p, p0 in self._start)
            if stats.triplets:
                total.backward()
                self.optimizer.step()
            losses.append(float(loss.detach()))
            triplets += stats.triplets
            active += stats.active
            seen += len(index)
            bar.set_postfix(loss=f"{np.mean(losses):.4f}", active=active)
        seconds = time.perf_counter() - start
        return EpochLog(epoch, float(np.mean(losses)), triplets, active, seen / max(seconds, 1e-9), seconds)

    def fit(self, resume: bool = False, progress: bool = True) -> TrainResult:
        """Train for ``config.epochs`` epochs or until ``patience`` epochs bring nothing better.

        Validation runs before the first epoch (epoch 0: the starting point) and after each one.
        The best weights are restored into ``net`` at the end. With ``resume`` the run continues
        from ``checkpoint`` where it stopped. Returns a :class:`TrainResult`.
        """
        history: list[EpochLog] = []
        first = 1
        best_state = None
        best_score = (-math.inf, -math.inf)
        best_epoch, bad_epochs = 0, 0
        if resume:
            state = self._load_checkpoint()
            history = [EpochLog(**h) for h in state["history"]]
            first = state["epoch"] + 1
            best_state, best_epoch, bad_epochs = state["best_state"], state["best_epoch"], state["bad_epochs"]
            best_score = tuple(state["best_score"])
            log.info("resuming after epoch %d (best so far: epoch %d)", state["epoch"], best_epoch)
        else:
            start = EpochLog(0, float("nan"), 0, 0, 0.0, 0.0, self.validate())
            history.append(start)
            best_state, best_score = self._state_copy(), self._score(start.validation)
            self._report(start, progress)
        stopped_early = bad_epochs >= self.config.patience
        for epoch in range(first, self.config.epochs + 1):
            if stopped_early:
                break
            entry = self.train_epoch(epoch, progress)
            entry.validation = self.validate()
            history.append(entry)
            score = self._score(entry.validation)
            if score > best_score:
                best_score, best_epoch, best_state, bad_epochs = score, epoch, self._state_copy(), 0
            else:
                bad_epochs += 1
            self._report(entry, progress)
            self._save_checkpoint(epoch, history, best_state, best_epoch, best_score, bad_epochs)
            stopped_early = bad_epochs >= self.config.patience and epoch < self.config.epochs
        self.net.load_state_dict(best_state)
        best = next(h for h in history if h.epoch == best_epoch)
        return TrainResult(history, best_epoch, best.validation, stopped_early)

    def _report(self, entry: EpochLog, progress: bool) -> None:
        v = entry.validation
        far = f"tar@far={self.config.far:g}"
        line = (f"epoch {entry.epoch:3d}  loss {entry.loss:.4f}  active {entry.active}/{entry.triplets}  "
                f"val {far} {v[far]:.3f}  auc {v['auc']:.4f}  eer {v['eer']:.3f}  acc {v['accuracy']:.3f}")
        if progress:
            from tqdm import tqdm

            tqdm.write(line)
        log.info(line)

    def _state_copy(self) -> dict:
        return {k: v.detach().cpu().clone() for k, v in self.net.state_dict().items()}

    def _save_checkpoint(self, epoch, history, best_state, best_epoch, best_score, bad_epochs) -> None:
        if self.checkpoint is None:
            return
        state = {
            "format": FORMAT + "-checkpoint", "epoch": epoch, "config": asdict(self.config), "meta": self.meta,
            "net": self._state_copy(), "optimizer": self.optimizer.state_dict(),
            "best_state": best_state, "best_epoch": best_epoch, "best_score": list(best_score),
            "bad_epochs": bad_epochs, "history": [asdict(h) for h in history],
            "sampler_rng": self.sampler.rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
            "l2_sp_start": [p0 for _, p0 in self._start],
        }
        self.checkpoint.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.checkpoint.with_name(self.checkpoint.name + ".tmp")
        torch.save(state, tmp)
        tmp.replace(self.checkpoint)

    def _load_checkpoint(self) -> dict:
        if self.checkpoint is None or not self.checkpoint.is_file():
            raise VisageError(f"cannot resume: no checkpoint at {self.checkpoint}")
        try:
            state = torch.load(self.checkpoint, map_location="cpu", weights_only=False)
        except Exception as exc:  # noqa: BLE001 -- unpickling can raise anything; the error names the file
            raise VisageError(f"{self.checkpoint}: not a readable checkpoint ({exc})") from None
        if not isinstance(state, dict) or state.get("format") != FORMAT + "-checkpoint":
            raise VisageError(f"{self.checkpoint}: not a visage training checkpoint")
        for key in ("kind", "encoder", "input_shape"):
            if state["meta"].get(key) != self.meta.get(key):
                raise VisageError(f"{self.checkpoint}: was made with {key}={state['meta'].get(key)!r}, "
                                  f"this run has {self.meta.get(key)!r}")
        self.net.load_state_dict(state["net"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.sampler.rng.bit_generator.state = state["sampler_rng"]
        torch.set_rng_state(state["torch_rng"])
        self._start = [(p, p0.to(p.device)) for (p, _), p0 in zip(self._start, state.get("l2_sp_start", []))]
        return state


def checkpoint_path(output: str | Path) -> Path:
    """Where a run writing ``output`` keeps its resumable checkpoint: ``<output>.ckpt``."""
    output = Path(output)
    return output.with_name(output.name + ".ckpt")
