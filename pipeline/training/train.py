"""Training a segmentation model: one validated config, a seeded loop, best and last checkpoints.

``train`` draws random augmented tiles from the training sources, optimises CE (or BCE) plus Dice with
AdamW on a warm-up + cosine schedule, scores per-class IoU and Dice on fixed validation tiles after each
epoch, keeps the checkpoint with the best mean foreground IoU (with a full :class:`ModelCard`), stops
early after ``patience`` epochs without improvement, and resumes from ``<out>.last.pt``.

The run is a pure function of the config and the data: item ``i`` of epoch ``e`` is drawn from
``(seed, e, i)``, and the learning rate is a function of the step, so a resumed run continues the same
sequence of batches a run without interruption would have seen.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from models.augment import Augment
from models.checkpoint import ModelCard, find_checkpoint, load_checkpoint, save_checkpoint
from models.device import autocast, choose_precision, resolve_device
from models.factory import create_model, size_multiple
from models.losses import SegmentationLoss, confusion_counts, iou_and_dice_per_class
from pipeline.classes import USER_CLASSES
from pipeline.errors import CheckpointError, ConfigError, OutputError
from pipeline.ground import GroundFrame
from pipeline.raster.scene import open_scene
from pipeline.training.data import (
    LabelSpec,
    SceneData,
    TrainingSource,
    TrainTiles,
    ValidationTiles,
    band_stats,
    iter_batches,
    split_by_area,
)
from pipeline.training.defaults import TRAIN_DEFAULTS
from pipeline.training.targets import InstanceTargets

__all__ = [
    "TrainConfig",
    "TrainResult",
    "train",
    "train_from_paths",
    "evaluate",
    "last_checkpoint_path",
    "training_precision",
]

log = logging.getLogger(__name__)

#: ``score_fn(model, mean, std) -> {"score": float, ...}``: the model-selection metric of a run.
ScoreFn = Callable[[torch.nn.Module, list[float], list[float]], dict[str, Any]]

_STATE_FORMAT = "sceneseg-train-state"


class TrainConfig(BaseModel):
    """Everything that decides a training run; saved in the checkpoint card so the run can be repeated."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    arch: str = Field("unet", description="Architecture name for models.factory.create_model.")
    arch_kwargs: dict[str, Any] = Field(
        default_factory=lambda: {"base_channels": 16, "depth": 4},
        description="Architecture options besides in_channels and num_classes (set from bands and classes).",
    )
    classes: list[str] = Field(
        default_factory=lambda: list(USER_CLASSES),
        description="Class names by output channel; 'background' first.",
    )
    bands: list[int] = Field(
        default_factory=lambda: [1, 2, 3], description="1-based bands read from the scenes."
    )
    tile_size: int = Field(TRAIN_DEFAULTS["tile_size"], ge=16, description="Training tile side in pixels, a multiple of 2**depth.")
    inference_tile_size: int | None = Field(
        None, ge=16, description="Tile side recommended for inference in the card (default: tile_size)."
    )
    context_margin: int = Field(
        24, ge=0, description="Context margin recorded in the card (overlap = 2 x margin)."
    )
    batch_size: int = Field(TRAIN_DEFAULTS["batch_size"], ge=1, description="Tiles per optimisation step.")
    epochs: int = Field(TRAIN_DEFAULTS["epochs"], ge=1, description="Most epochs to run.")
    steps_per_epoch: int = Field(TRAIN_DEFAULTS["steps_per_epoch"], ge=1, description="Optimisation steps per epoch.")
    lr: float = Field(TRAIN_DEFAULTS["lr"], gt=0, description="Peak learning rate (AdamW; linear warm-up, cosine decay).")
    weight_decay: float = Field(1e-4, ge=0, description="AdamW weight decay.")
    warmup_steps: int = Field(50, ge=0, description="Steps of linear learning-rate warm-up.")
    loss: Literal["ce", "bce"] = Field(
        TRAIN_DEFAULTS["loss"], description="ce: softmax + cross-entropy; bce: sigmoid + BCE per class."
    )
    dice_weight: float = Field(1.0, ge=0, description="Weight of the Dice term added to CE / BCE.")
    class_weights: list[float] | None = Field(None, description="Per-class weights of both loss terms.")
    augment: Augment = Field(default_factory=Augment, description="Training augmentation.")
    seed: int = Field(TRAIN_DEFAULTS["seed"], description="Seed of weights, tile sampling and augmentation.")
    device: str = Field("auto", description="auto, cpu, cuda or cuda:N.")
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="auto: bf16 autocast on CUDA and on a CPU with native bf16 (amx_bf16, avx512_bf16), "
        "fp32 on other CPUs: the rule inference uses (models.device.choose_precision). The card records the choice.",
    )
    patience: int | None = Field(
        None, ge=1, description="Stop after this many epochs without a better validation IoU."
    )
    val_tiles: int | None = Field(64, ge=1, description="Most validation tiles scored per epoch (None: all).")
    stats_tiles: int = Field(64, ge=1, description="Training tiles sampled for the band mean and std.")
    out: Path = Field(
        Path("model.pt"), description="Best checkpoint path; the resumable state is <out>.last.pt."
    )
    resume: bool = Field(False, description="Continue from <out>.last.pt when it exists.")
    description: str = Field("", description="Free text stored in the card's training record.")
    pretrained: bool = Field(
        False, description="Start the encoder from packaged ImageNet weights (architectures that have them)."
    )
    encoder_lr: float | None = Field(
        None, gt=0, description="Peak learning rate of the encoder (None: lr); lower for a pretrained one."
    )
    instance_targets: InstanceTargets | None = Field(
        None, description="Boundary and contact widths in metres (classes building_boundary, building_contact)."
    )
    channels_last: bool = Field(False, description="Train in channels-last memory format (faster on CPU).")
    init: Path | None = Field(
        None, description="Start from this checkpoint's weights and band statistics (fine-tuning; same "
        "architecture, classes and bands) instead of a fresh or pretrained model.",
    )
    gsd_range_m: tuple[float, float] | None = Field(
        None, description="Train across ground sample distances: a share gsd_p of the tiles is resampled to a "
        "GSD drawn log-uniform from [low, high] metres, targets rasterized at it. The card records the range, "
        "and inference reads a scene inside it at its own resolution (None: one GSD, the scenes').",
    )
    gsd_p: float = Field(1.0, ge=0, le=1, description="Share of the tiles resampled into gsd_range_m.")
    ema_decay: float | None = Field(
        None, gt=0, lt=1, description="Keep an exponential moving average of the weights (decay per step); "
        "it is what validation scores and the checkpoints hold (None: the raw weights).",
    )

    @model_validator(mode="after")
    def _consistent(self) -> TrainConfig:
        reserved = {"in_channels", "num_classes", "pretrained"} & set(self.arch_kwargs)
        if reserved:
            raise ValueError(
                f"arch_kwargs must not set {sorted(reserved)}: they follow from bands and classes"
            )
        if not self.classes or self.classes[0] != "background" or len(set(self.classes)) != len(self.classes):
            raise ValueError(f"classes must be unique and start with 'background', got {self.classes}")
        multiple = size_multiple(self.arch, self.arch_kwargs)
        for name in ("tile_size", "inference_tile_size"):
            value = getattr(self, name)
            if value is not None and value % multiple:
                what = f"2**depth = {multiple}" if self.arch in ("unet", "unetpp") else f"{multiple} for {self.arch}"
                raise ValueError(f"{name} {value} must be a multiple of {what}")
        if self.gsd_range_m is not None and not 0 < self.gsd_range_m[0] < self.gsd_range_m[1]:
            raise ValueError(f"gsd_range_m must be [low, high] with 0 < low < high, got {list(self.gsd_range_m)}")
        if self.class_weights is not None and len(self.class_weights) != len(self.classes):
            raise ValueError(
                f"class_weights has {len(self.class_weights)} values for {len(self.classes)} classes"
            )
        return self

    @property
    def full_arch_kwargs(self) -> dict[str, Any]:
        return {"in_channels": len(self.bands), "num_classes": len(self.classes), **self.arch_kwargs}

    @property
    def activation(self) -> Literal["softmax", "sigmoid"]:
        return "softmax" if self.loss == "ce" else "sigmoid"


@dataclass
class TrainResult:
    """What a training run produced."""

    checkpoint: Path
    last: Path
    history: list[dict[str, Any]]
    best: dict[str, Any]
    stopped_early: bool = False
    seconds: float = 0.0


def last_checkpoint_path(out: str | Path) -> Path:
    """The resumable state beside the best checkpoint: ``model.pt`` -> ``model.last.pt``."""
    out = Path(out)
    return out.with_name(f"{out.stem}.last.pt")


def _lr_at(step: int, total: int, config: TrainConfig) -> float:
    """Linear warm-up to ``lr``, then cosine decay to 1% of it at the last step."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    span = max(1, total - config.warmup_steps)
    progress = min(1.0, (step - config.warmup_steps) / span)
    return config.lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * progress)))


def _predict(logits: torch.Tensor, activation: str) -> torch.Tensor:
    # Sigmoid models: the most probable class per pixel, as inference decides.
    return logits.argmax(dim=1) if activation == "softmax" else logits.sigmoid().argmax(dim=1)


@torch.no_grad()
def evaluate(
    model: torch.nn.Module, tiles: ValidationTiles, config: TrainConfig, device: torch.device
) -> dict[str, Any]:
    """Per-class IoU and Dice over the validation tiles, their foreground mean, and the mean loss."""
    model.eval()
    loss_fn = _loss(config).to(device)
    counts = np.zeros((len(config.classes),) * 2, dtype=np.int64)
    loss_sum, n = 0.0, 0
    for images, masks in iter_batches(tiles, config.batch_size):
        images, masks = _to_device(images, config, device), masks.to(device)
        with autocast(device, config.precision):
            logits = model(images)
        logits = logits.float()
        loss_sum += float(loss_fn(logits, masks)) * len(images)
        n += len(images)
        counts += confusion_counts(_predict(logits, config.activation), masks, len(config.classes))
    per_class = iou_and_dice_per_class(counts, config.classes)
    foreground = [per_class[c]["iou"] for c in config.classes[1:]]
    return {
        "val_loss": loss_sum / max(n, 1),
        "mean_iou": float(np.nanmean(foreground)) if not all(math.isnan(v) for v in foreground) else 0.0,
        "per_class": per_class,
    }


def _to_device(images: torch.Tensor, config: TrainConfig, device: torch.device) -> torch.Tensor:
    images = images.to(device)
    return images.contiguous(memory_format=torch.channels_last) if config.channels_last else images


def _param_groups(model: torch.nn.Module, config: TrainConfig) -> list[dict[str, Any]]:
    """One group, or the encoder's parameters apart at ``encoder_lr / lr`` of the schedule."""
    encoder = getattr(model, "encoder_parameters", None)
    if config.encoder_lr is None or encoder is None:
        return [{"params": list(model.parameters()), "lr_scale": 1.0}]
    ids = {id(p) for p in encoder()}
    return [
        {"params": [p for p in model.parameters() if id(p) in ids], "lr_scale": config.encoder_lr / config.lr},
        {"params": [p for p in model.parameters() if id(p) not in ids], "lr_scale": 1.0},
    ]


def _loss(config: TrainConfig) -> SegmentationLoss:
    return SegmentationLoss(
        activation=config.activation, dice_weight=config.dice_weight, class_weights=config.class_weights
    )


def _save_state(path: Path, state: dict[str, Any]) -> None:
    """Write the resumable state atomically; it holds only tensors and primitives (weights_only loads it)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:
            torch.save(state, fh)
        os.replace(tmp, path)
    except OSError as exc:
        raise OutputError(
            f"cannot write training state {path}: {exc}; check free space and permissions"
        ) from exc


def _load_state(path: Path, config: TrainConfig) -> dict[str, Any]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for a corrupt or foreign file
        raise CheckpointError(f"cannot resume from {path}: {exc}; delete it to start afresh") from None
    if not isinstance(state, dict) or state.get("format") != _STATE_FORMAT:
        raise CheckpointError(f"{path} is not a sceneseg training state; delete it to start afresh")
    saved = state["config"]
    now = config.model_dump(mode="json")
    # Only settings that do not change what is learnt may differ on resume (e.g. more epochs, patience).
    free = {"epochs", "patience", "resume", "device", "out", "description"}
    changed = sorted(k for k in now if k not in free and saved.get(k) != now[k])
    if changed:
        raise ConfigError(
            f"cannot resume from {path}: settings {changed} differ from the saved run; "
            "use the same settings, or delete the file to start afresh"
        )
    return state


def training_gsd_m(sources: Sequence[TrainingSource]) -> float:
    """The median ground sample distance (metres per pixel) of the training scenes: what the card records."""
    return float(np.median([GroundFrame.for_grid(open_scene(s.image).grid).pixel_size_m for s in sources]))


def _init_checkpoint(config: TrainConfig):
    """The checkpoint ``config.init`` names, checked to fit the run (architecture, classes, bands)."""
    start = load_checkpoint(config.init)
    card = start.card
    mine = (config.arch, config.full_arch_kwargs, list(config.classes), list(config.bands))
    theirs = (card.arch, dict(card.arch_kwargs), list(card.classes), list(card.bands))
    if mine != theirs:
        raise ConfigError(
            f"init checkpoint {config.init} is {card.arch} {dict(card.arch_kwargs)} with classes {card.classes} "
            f"and bands {card.bands}; this run trains {config.arch} {config.full_arch_kwargs} with classes "
            f"{config.classes} and bands {config.bands}: start from a checkpoint of the same model, or drop init"
        )
    return start


def init_recipe(checkpoint: str | Path) -> dict[str, Any]:
    """The TrainConfig fields a fine-tuning run takes from the checkpoint it starts from: the model
    (architecture, options, classes, bands), its inference tile and context margin, and its instance
    targets, so the new checkpoint is the same model and post-processes the same way.

    ``checkpoint`` is a path or a packaged name (``buildings-banepa``).
    """
    path = find_checkpoint(checkpoint)
    card = load_checkpoint(path).card
    kwargs = {k: v for k, v in card.arch_kwargs.items() if k not in ("in_channels", "num_classes")}
    targets = (InstanceTargets(boundary_m=card.boundary_m, contact_m=card.contact_m or 0.0)
               if card.boundary_m is not None else None)
    return {"init": path, "arch": card.arch, "arch_kwargs": kwargs, "classes": list(card.classes),
            "bands": list(card.bands), "inference_tile_size": card.tile_size,
            "context_margin": card.context_margin, "instance_targets": targets}


def training_precision(
    device: torch.device, precision: str, flags: frozenset[str] | None = None
) -> dict[str, str]:
    """The precision a run trains in and why, for the card: ``auto`` is the inference rule
    (:func:`models.device.choose_precision`), so it depends on the machine that trained. ``flags``
    overrides the CPU's feature flags (tests)."""
    dtype, reason = choose_precision(device, precision, flags)
    names = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}
    return {"precision": names[dtype], "precision_reason": reason}


def _card(
    config: TrainConfig, mean: list[float], std: list[float], record: dict[str, Any],
    separation: dict[str, float] | None = None,
) -> ModelCard:
    return ModelCard(
        arch=config.arch,
        arch_kwargs=config.full_arch_kwargs,
        classes=list(config.classes),
        bands=list(config.bands),
        mean=mean,
        std=std,
        activation=config.activation,
        tile_size=config.inference_tile_size or config.tile_size,
        context_margin=config.context_margin,
        training=record,
        boundary_m=None if config.instance_targets is None else config.instance_targets.boundary_m,
        contact_m=None if config.instance_targets is None else config.instance_targets.contact_m,
        gsd_m=record["gsd_m"],
        gsd_range_m=None if config.gsd_range_m is None else list(config.gsd_range_m),
        separation=separation,
    )


def _data_record(sources: Sequence[TrainingSource]) -> list[dict[str, Any]]:
    return [
        {
            "image": str(s.image),
            "labels": str(s.labels),
            "region": None
            if s.region is None
            else [s.region.row, s.region.col, s.region.rows, s.region.cols],
        }
        for s in sources
    ]


def _progress_bar(enabled: bool, total: int, done: int):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=done, unit="step", dynamic_ncols=True, leave=False)


@contextmanager
def _deterministic(device: torch.device) -> Iterator[None]:
    """Deterministic kernels on CPU for the run, then the caller's setting back."""
    enabled = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(enabled, warn_only=warn_only)


@dataclass
class _Run:
    """The mutable state of a run: what ``<out>.last.pt`` saves and a resumed run loads."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    mean: list[float]
    std: list[float]
    history: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] = field(default_factory=lambda: {"epoch": 0, "mean_iou": -1.0, "score": -1.0})
    since_best: int = 0
    epoch: int = 0
    #: The moving average of the weights (``ema_decay``), in eval mode; validated and saved instead of ``model``.
    ema: torch.nn.Module | None = None

    @property
    def scored(self) -> torch.nn.Module:
        """The weights validation scores and the checkpoints hold."""
        return self.ema if self.ema is not None else self.model

    @torch.no_grad()
    def update_ema(self, decay: float) -> None:
        if self.ema is None:
            return
        for averaged, current in zip(self.ema.state_dict().values(), self.model.state_dict().values(), strict=True):
            if averaged.is_floating_point():  # weights and batch-norm statistics; counters are copied
                averaged.lerp_(current, 1.0 - decay)
            else:
                averaged.copy_(current)

    def state(self, config: TrainConfig) -> dict[str, Any]:
        return {
            "format": _STATE_FORMAT,
            "config": config.model_dump(mode="json"),
            "epoch": self.epoch,
            "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "mean": self.mean,
            "std": self.std,
            "history": self.history,
            "best": self.best,
            "since_best": self.since_best,
            **({} if self.ema is None else {"ema": {k: v.detach().cpu() for k, v in self.ema.state_dict().items()}}),
        }

    def restore(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.history, self.best = state["history"], state["best"]
        self.since_best, self.epoch = state["since_best"], state["epoch"]


def _train_epoch(
    run: _Run,
    tiles: TrainTiles,
    loss_fn: SegmentationLoss,
    config: TrainConfig,
    device: torch.device,
    bar: Any,
) -> float:
    """One epoch of optimisation steps; returns the mean training loss."""
    run.model.train()
    tiles.epoch = run.epoch
    total_steps = config.epochs * config.steps_per_epoch
    losses = []
    for step, (images, masks) in enumerate(iter_batches(tiles, config.batch_size)):
        for group in run.optimizer.param_groups:
            lr = _lr_at(run.epoch * config.steps_per_epoch + step, total_steps, config)
            group["lr"] = lr * group.get("lr_scale", 1.0)
        images, masks = _to_device(images, config, device), masks.to(device)
        with autocast(device, config.precision):
            logits = run.model(images)
        # The loss in fp32 whatever the autocast; U-Net++ with deep supervision gives a list of heads.
        logits = logits.float() if isinstance(logits, torch.Tensor) else [x.float() for x in logits]
        loss = loss_fn(logits, masks)
        run.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        run.optimizer.step()
        if config.ema_decay is not None:
            run.update_ema(config.ema_decay)
        losses.append(float(loss.detach()))
        if bar is not None:
            bar.update(1)
            bar.set_postfix(epoch=run.epoch + 1, loss=f"{losses[-1]:.3f}")
    return float(np.mean(losses))


def train(
    config: TrainConfig,
    sources_train: Sequence[TrainingSource],
    sources_val: Sequence[TrainingSource],
    progress: bool = True,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    score_fn: ScoreFn | None = None,
) -> TrainResult:
    """Train ``config.arch`` on tiles of ``sources_train``, validating on ``sources_val`` after each epoch.

    Writes the best checkpoint (by mean foreground IoU, or by ``score_fn``'s ``"score"``) to
    ``config.out`` and the resumable state to ``<out>.last.pt`` after every epoch, then calls
    ``on_epoch`` with the epoch's history entry.

    ``score_fn(model, mean, std)`` (the model in eval mode) returns a dict of metrics with a ``"score"``
    to maximise, e.g. building F1 through instance separation and the vector stage; the dict goes into
    the history entry.

    Raises:
        ConfigError: bad settings, or sources that cannot give a tile.
        CheckpointError: ``resume`` from a state of a different run.
    """
    if not sources_train or not sources_val:
        raise ConfigError("training needs at least one training and one validation source")
    t_start = time.perf_counter()
    device = resolve_device(config.device)
    with _deterministic(device):
        run, stopped_early = _train(
            config, sources_train, sources_val, device, progress, on_epoch, t_start, score_fn
        )
    if not Path(config.out).is_file():
        raise OutputError(
            f"training ended without writing {config.out}: no epoch ran; raise epochs or turn off resume"
        )
    return TrainResult(
        checkpoint=Path(config.out),
        last=last_checkpoint_path(config.out),
        history=run.history,
        best=run.best,
        stopped_early=stopped_early,
        seconds=time.perf_counter() - t_start,
    )


def _train(
    config: TrainConfig,
    sources_train: Sequence[TrainingSource],
    sources_val: Sequence[TrainingSource],
    device: torch.device,
    progress: bool,
    on_epoch: Callable[[dict[str, Any]], None] | None,
    t_start: float,
    score_fn: ScoreFn | None = None,
) -> tuple[_Run, bool]:
    torch.manual_seed(config.seed)
    out = Path(config.out)
    last_path = last_checkpoint_path(out)
    targets = config.instance_targets
    train_scenes = [SceneData(s, config.classes, config.bands, targets=targets) for s in sources_train]
    val_scenes = [SceneData(s, config.classes, config.bands, targets=targets) for s in sources_val]
    state = _load_state(last_path, config) if config.resume and last_path.is_file() else None
    start = _init_checkpoint(config) if config.init is not None and state is None else None
    # A fine-tuned model keeps the separation thresholds of the one it started from until they are re-tuned
    # (read once here, also when a fine-tuning run resumes).
    separation = None
    if config.init is not None:
        separation = (start or load_checkpoint(config.init)).card.separation
    if state is not None:
        mean, std = list(state["mean"]), list(state["std"])
    elif start is not None:  # the normalization the weights were trained with
        mean, std = list(start.card.mean), list(start.card.std)
    else:
        mean, std = band_stats(train_scenes, config.tile_size, config.stats_tiles, config.seed)

    # Pretrained weights only for a fresh model; the card keeps arch_kwargs without them.
    extra = {"pretrained": True} if config.pretrained and state is None and start is None else {}
    model = create_model(config.arch, **config.full_arch_kwargs, **extra)
    if start is not None:
        model.load_state_dict(start.model.state_dict())
        log.info("starting from the weights of %s", config.init)
    model = model.to(device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(_param_groups(model, config), lr=config.lr, weight_decay=config.weight_decay)
    ema = copy.deepcopy(model).eval() if config.ema_decay is not None else None
    if ema is not None:
        ema.requires_grad_(False)
    run = _Run(model, optimizer, mean, std, ema=ema)
    if state is not None:
        run.restore(state)
        log.info("resuming from %s after epoch %d", last_path, run.epoch)
    loss_fn = _loss(config).to(device)
    tiles = TrainTiles(
        train_scenes,
        config.tile_size,
        config.steps_per_epoch * config.batch_size,
        mean,
        std,
        config.augment,
        config.seed,
        gsd_range_m=config.gsd_range_m,
        gsd_p=config.gsd_p,
    )
    val_tiles = ValidationTiles(val_scenes, config.tile_size, mean, std, config.val_tiles)
    record = {
        "config": config.model_dump(mode="json"),
        "train_data": _data_record(sources_train),
        "val_data": _data_record(sources_val),
        "val_tiles": len(val_tiles),
        "gsd_m": training_gsd_m(sources_train),
        "loss": f"{config.loss} + {config.dice_weight} x dice",
        "torch": torch.__version__,
        "device": str(device),
        **training_precision(device, config.precision),
    }
    bar = _progress_bar(progress, config.epochs * config.steps_per_epoch, run.epoch * config.steps_per_epoch)
    try:
        while run.epoch < config.epochs:
            if config.patience is not None and run.since_best >= config.patience:
                return run, True
            t_epoch = time.perf_counter()
            train_loss = _train_epoch(run, tiles, loss_fn, config, device, bar)
            step_seconds = (time.perf_counter() - t_epoch) / config.steps_per_epoch
            metrics = evaluate(run.scored, val_tiles, config, device)
            if score_fn is not None:
                run.scored.eval()
                with torch.no_grad():
                    metrics["selection"] = score_fn(run.scored, mean, std)
                metrics["score"] = float(metrics["selection"]["score"])
            else:
                metrics["score"] = metrics["mean_iou"]
            run.epoch += 1
            entry = {
                "epoch": run.epoch,
                "train_loss": train_loss,
                **metrics,
                "lr": optimizer.param_groups[0]["lr"],
                "step_seconds": step_seconds,
                "seconds": time.perf_counter() - t_epoch,
            }
            run.history.append(entry)
            improved = metrics["score"] > run.best.get("score", run.best["mean_iou"])
            if improved:
                run.best = {
                    "epoch": run.epoch,
                    "score": metrics["score"],
                    "mean_iou": metrics["mean_iou"],
                    "per_class": metrics["per_class"],
                    "val_loss": metrics["val_loss"],
                }
                run.since_best = 0
                training = {
                    **record,
                    "epochs": run.epoch,
                    "seed": config.seed,
                    "best": run.best,
                    "history": run.history,
                    "seconds": time.perf_counter() - t_start,
                }
                save_checkpoint(out, run.scored, _card(config, mean, std, training, separation))
            else:
                run.since_best += 1
            ious = " ".join(f"{c}={metrics['per_class'][c]['iou']:.3f}" for c in config.classes[1:])
            log.info(
                "epoch %d/%d loss %.4f val_loss %.4f IoU %s mean %.3f score %.4f%s (%.0f s, %.2f s a step)",
                run.epoch,
                config.epochs,
                train_loss,
                metrics["val_loss"],
                ious,
                metrics["mean_iou"],
                metrics["score"],
                " best" if improved else "",
                entry["seconds"],
                step_seconds,
            )
            _save_state(last_path, run.state(config))
            if on_epoch is not None:
                on_epoch(entry)
    finally:
        if bar is not None:
            bar.close()
    return run, False


def train_from_paths(
    scenes: Sequence[str | Path],
    labels: str | Path,
    *,
    out: str | Path,
    arch: str = "unet",
    classes: Sequence[str] = USER_CLASSES,
    class_column: str | None = "class",
    layer_classes: dict[str, str] | None = None,
    val_fraction: float = 0.2,
    progress: bool = True,
    **options: Any,
) -> TrainResult:
    """Train from scene files and one label file, splitting by area.

    Scenes laid out in two or more rows of tiles are split by rows of tiles (the southernmost row
    validates, see :func:`pipeline.training.data.split_by_bounds`); otherwise each scene is cut into a training band
    and a validation band of rows (the bottom ``val_fraction``), half a tile apart.

    Args:
        scenes: GeoTIFF scenes.
        labels: GeoPackage or GeoJSON of polygons.
        out: Best checkpoint path.
        arch: Architecture name.
        classes: Class names, 'background' first.
        class_column: Label column holding class names; None for one layer per class.
        layer_classes: Layer name to class name, when each layer is one class.
        val_fraction: Share of rows that validates when scenes are split into bands.
        progress: Show a progress bar.
        **options: Any other :class:`TrainConfig` field (epochs, tile_size, arch_kwargs, ...). With
            ``init`` (a checkpoint path or packaged name), the architecture, classes, bands and instance
            targets are the checkpoint's (:func:`init_recipe`) and ``arch`` and ``classes`` are ignored.
    """
    if not scenes:
        raise ConfigError("give at least one scene to train on")
    if options.get("init") is not None:  # fine-tuning: the model and its classes are the checkpoint's
        options = {**options, **init_recipe(options["init"])}
        arch, classes = options.pop("arch"), options.pop("classes")
    config = TrainConfig(arch=arch, classes=list(classes), out=Path(out), **options)
    spec = LabelSpec(class_column=class_column, layer_classes=layer_classes)
    sources = [TrainingSource(Path(s), Path(labels), spec) for s in scenes]
    train_sources, val_sources = split_by_area(sources, val_fraction, gap=config.tile_size // 2)
    log.info("%d training and %d validation source(s)", len(train_sources), len(val_sources))
    return train(config, train_sources, val_sources, progress=progress)
