"""Checkpoints that carry their metadata, written atomically and read without executing anything.

A checkpoint file is ``torch.save`` of a plain dict::

    {"format": "sceneseg-checkpoint", "format_version": 1,
     "card": ModelCard.model_dump(mode="json"), "state_dict": {name: tensor}}

It holds only strings, numbers, lists, dicts and tensors, so it loads with ``torch.load(weights_only=True)``,
which refuses any pickled Python object instead of running it. The card says everything inference needs to
check a scene before reading a pixel: architecture, classes, band order, normalisation, tile size, margin.
"""

from __future__ import annotations

import functools
import hashlib
import os
import pickle
import re
import tempfile
import zipfile
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from torch import nn

from models.errors import CheckpointError, ConfigError, OutputError
from models.factory import available_models, create_model, size_multiple

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "WEIGHTS_DIR",
    "ModelCard",
    "LoadedModel",
    "CheckpointCard",
    "checkpoint_card",
    "checkpoint_id",
    "save_checkpoint",
    "load_checkpoint",
    "find_checkpoint",
    "available_checkpoints",
]

FORMAT = "sceneseg-checkpoint"
FORMAT_VERSION = 1
WEIGHTS_DIR = Path(__file__).parent / "weights"
_FIX = "re-save the model with models.checkpoint.save_checkpoint"


def _utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _sceneseg_version() -> str:
    try:
        return version("sceneseg")
    except PackageNotFoundError:  # running from a source tree that was not pip-installed
        return "0+unknown"


class ModelCard(BaseModel):
    """What a checkpoint's weights mean: architecture, classes, input bands and their normalisation."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    arch: str = Field(description="Architecture name for models.factory.create_model, e.g. 'unet'.")
    arch_kwargs: dict[str, Any] = Field(
        description="Architecture keyword arguments: in_channels, num_classes, base_channels, depth, ..."
    )
    classes: list[str] = Field(
        description="Class names by output channel; index 0 is 'background', e.g. background, building, road."
    )
    bands: list[int] = Field(description="1-based band indices read from the scene, in model input order.")
    mean: list[float] = Field(description="Per input band mean, in the scene's raw units.")
    std: list[float] = Field(description="Per input band standard deviation, in the scene's raw units (> 0).")
    activation: Literal["softmax", "sigmoid"] = Field(
        default="softmax", description="softmax over classes, or sigmoid per class."
    )
    tile_size: int = Field(description="Recommended inference tile side in pixels, a multiple of 2**depth.")
    context_margin: int = Field(
        ge=0, description="Pixels of context the model needs on each side; overlap = 2 * margin is advised."
    )
    input_dtype: str | None = Field(
        default=None, description="Pixel data type of the training scenes, e.g. 'uint8' (None: not recorded)."
    )
    input_range: list[float] | None = Field(
        default=None, description="[low, high] of the raw pixel values trained on, e.g. [0, 255] (None: not recorded)."
    )
    training: dict[str, Any] = Field(
        default_factory=dict, description="Free-form record of training: data, epochs, seed, metrics, loss."
    )
    boundary_m: float | None = Field(
        default=None,
        description="Instance targets: each footprint eroded by this many metres gives its interior "
        "(class 'building'); the ring is class 'building_boundary'. None: no instance classes.",
    )
    contact_m: float | None = Field(
        default=None,
        description="Instance targets: background within this gap (metres) of two buildings is class "
        "'building_contact'.",
    )
    gsd_m: float | None = Field(
        default=None, gt=0,
        description="Ground sample distance (metres per pixel) the model was trained at; scenes at another are "
        "read resampled to it (None: read every scene as it is).",
    )
    gsd_range_m: list[float] | None = Field(
        default=None,
        description="[low, high] ground sample distances (metres per pixel) the model was trained across; a "
        "scene inside it is read at its own resolution, one outside resampled to the nearer end (None: read at "
        "gsd_m).",
    )
    separation: dict[str, float] | None = Field(
        default=None,
        description="Tuned building separation: seed_confidence (0..1), min_seed_m2, grow_m, "
        "min_building_area_m2 (see pipeline.vectors.instances.separate_buildings).",
    )
    created_at: str = Field(default_factory=_utc_now, description="Creation time, ISO 8601 UTC.")
    sceneseg_version: str = Field(
        default_factory=_sceneseg_version, description="sceneseg version that wrote the card."
    )

    @field_validator("arch")
    @classmethod
    def _known_arch(cls, arch: str) -> str:
        if arch not in available_models():
            raise ValueError(f"arch {arch!r} is not known; valid names: {', '.join(available_models())}")
        return arch

    @field_validator("bands")
    @classmethod
    def _one_based(cls, bands: list[int]) -> list[int]:
        if not bands or min(bands) < 1:
            raise ValueError(f"bands must be a non-empty list of 1-based band indices, got {bands}")
        return bands

    @field_validator("gsd_range_m")
    @classmethod
    def _gsd_range(cls, gsd_range_m: list[float] | None) -> list[float] | None:
        if gsd_range_m is not None and (len(gsd_range_m) != 2 or not 0 < gsd_range_m[0] < gsd_range_m[1]):
            raise ValueError(f"gsd_range_m must be [low, high] with 0 < low < high, got {gsd_range_m}")
        return gsd_range_m

    @field_validator("std")
    @classmethod
    def _positive_std(cls, std: list[float]) -> list[float]:
        if any(not s > 0 for s in std):
            raise ValueError(f"every std must be > 0 (it divides the input), got {std}")
        return std

    @model_validator(mode="after")
    def _consistent(self) -> ModelCard:
        in_channels = self.arch_kwargs.get("in_channels")
        num_classes = self.arch_kwargs.get("num_classes")
        if not (len(self.bands) == len(self.mean) == len(self.std) == in_channels):
            raise ValueError(
                f"bands ({len(self.bands)}), mean ({len(self.mean)}), std ({len(self.std)}) and "
                f"arch_kwargs['in_channels'] ({in_channels}) must all be equal"
            )
        if len(self.classes) != num_classes:
            raise ValueError(
                f"classes has {len(self.classes)} names but arch_kwargs['num_classes'] is {num_classes}"
            )
        if not self.classes or self.classes[0] != "background" or len(set(self.classes)) != len(self.classes):
            raise ValueError(f"classes must be unique and start with 'background', got {self.classes}")
        multiple = size_multiple(self.arch, self.arch_kwargs, default_depth=0)
        if self.tile_size < 1 or self.tile_size % multiple:
            raise ValueError(
                f"tile_size {self.tile_size} must be a positive multiple of "
                + (f"{multiple} for {self.arch}" if "depth" not in self.arch_kwargs and multiple > 1
                   else f"2**depth = {multiple}")
            )
        if 2 * self.context_margin >= self.tile_size:
            raise ValueError(
                f"context_margin {self.context_margin} leaves no core in a {self.tile_size}-pixel tile; "
                "it must be less than half the tile size"
            )
        return self


@dataclass(frozen=True, slots=True)
class LoadedModel:
    """A model in eval mode with the card it was saved with."""

    model: nn.Module
    card: ModelCard
    checkpoint_id: str
    path: Path


def checkpoint_id(arch: str, state_dict: dict[str, torch.Tensor]) -> str:
    """Short stable id of a set of weights: ``"{arch}-{sha256[:12]}"``.

    The hash covers each tensor's name, dtype, shape and bytes, in sorted key order, so it does not depend
    on the device the weights sit on or on the file they were read from.
    """
    digest = hashlib.sha256()
    for key in sorted(state_dict):
        tensor = state_dict[key].detach().to("cpu").contiguous()
        digest.update(f"{key}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return f"{arch}-{digest.hexdigest()[:12]}"


def save_checkpoint(path: str | os.PathLike[str], model: nn.Module, card: ModelCard) -> str:
    """Write ``model``'s weights and ``card`` to ``path`` atomically and return the checkpoint id.

    Raises:
        CheckpointError: the model's weights do not fit the architecture the card describes.
        OutputError: the file cannot be written.
    """
    path = Path(path)
    state_dict = {k: v.detach().to("cpu") for k, v in model.state_dict().items()}
    _check_state_dict(path, card, state_dict, when="saving")
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "card": card.model_dump(mode="json"),
        "state_dict": state_dict,
    }
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # A temporary name in the same directory, so the final rename is atomic on one filesystem.
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise OutputError(f"cannot write checkpoint {path}: {exc}; choose a writable directory") from exc
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(payload, fh)
        os.replace(tmp_name, path)
    except BaseException as exc:
        Path(tmp_name).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise OutputError(
                f"cannot write checkpoint {path}: {exc}; check free space and permissions"
            ) from exc
        raise
    return checkpoint_id(card.arch, state_dict)


def available_checkpoints() -> list[str]:
    """Names of the checkpoints packaged in ``models/weights`` (file stems), sorted."""
    return sorted(p.stem for p in WEIGHTS_DIR.glob("*.pt"))


def find_checkpoint(name_or_path: str | os.PathLike[str]) -> Path:
    """Resolve a checkpoint path, or a bare packaged name like ``"synthetic-demo"``, to an existing file.

    Raises:
        CheckpointError: no such file or packaged name (the message lists the packaged names).
    """
    text = os.fspath(name_or_path)
    is_name = isinstance(name_or_path, str) and Path(text).name == text and not text.endswith(".pt")
    if is_name and not Path(text).exists():
        path = WEIGHTS_DIR / f"{text}.pt"
        if path.is_file():
            return path
        raise CheckpointError(
            f"no packaged checkpoint named {text!r} (looked for {path}); packaged names: "
            f"{', '.join(available_checkpoints()) or 'none'}; or give the path of a .pt file"
        )
    path = Path(text)
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint file {path} does not exist (or is not a file); give the path of a .pt file written "
            f"by save_checkpoint, or a packaged name: {', '.join(available_checkpoints()) or 'none'}"
        )
    return path


def load_checkpoint(
    name_or_path: str | os.PathLike[str], map_location: str | torch.device = "cpu"
) -> LoadedModel:
    """Load a checkpoint written by :func:`save_checkpoint`; the model is returned in eval mode.

    Only ``torch.load(..., weights_only=True)`` is used: a file holding pickled Python objects is refused,
    never executed.

    Raises:
        CheckpointError: missing, corrupt, unsafe or foreign file, invalid card, or weights that do not fit.
    """
    path = find_checkpoint(name_or_path)
    payload = _read(path, map_location)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise CheckpointError(
            f"{path} is not a sceneseg checkpoint (format {found!r}, expected {FORMAT!r}); {_FIX}"
        )
    if payload.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format_version {payload.get('format_version')!r}; this sceneseg reads "
            f"version {FORMAT_VERSION}: use the sceneseg version that wrote it, or {_FIX}"
        )
    try:
        card = ModelCard.model_validate(payload.get("card"))
    except ValidationError as exc:
        raise CheckpointError(f"{path} has an invalid model card: {exc}; fix the card and {_FIX}") from exc
    state_dict = payload.get("state_dict")
    if not isinstance(state_dict, dict) or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise CheckpointError(f"{path} has no state_dict of tensors; {_FIX}")
    model = _check_state_dict(path, card, state_dict, when="loading")
    model.load_state_dict(state_dict)
    model.to(map_location).eval()
    return LoadedModel(model=model, card=card, checkpoint_id=checkpoint_id(card.arch, state_dict), path=path)


@dataclass(frozen=True, slots=True)
class CheckpointCard:
    """What the client side of a run needs of a checkpoint: its card and id, without a model to hold."""

    card: ModelCard
    checkpoint_id: str
    path: Path


def checkpoint_card(name_or_path: str | os.PathLike[str]) -> CheckpointCard:
    """The card and id of a checkpoint, read and validated once per version of the file in this process.

    A run's preflight, its scenes' preparation and their failure records all ask; the file is read (and
    checked as :func:`load_checkpoint` checks it) the first time, and again only when it changes on disk.
    The workers load the weights themselves (``pipeline.raster.infer``).

    Raises:
        CheckpointError: as :func:`load_checkpoint`.
    """
    path = find_checkpoint(name_or_path).resolve()
    stat = path.stat()
    return _card_of(path, stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=16)
def _card_of(path: Path, mtime_ns: int, size: int) -> CheckpointCard:
    loaded = load_checkpoint(path)
    return CheckpointCard(loaded.card.model_copy(deep=True), loaded.checkpoint_id, path)


def _read(path: Path, map_location: str | torch.device) -> Any:
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    # "from None" drops torch's advice to retry with weights_only=False, the one thing that must not happen.
    except pickle.UnpicklingError as exc:
        if re.search(r"unsupported global", str(exc), re.IGNORECASE):
            raise CheckpointError(
                f"{path} holds pickled Python objects, which sceneseg will not execute (torch.load with "
                f"weights_only=True refused them); load it once in a trusted session and {_FIX}"
            ) from None
        raise CheckpointError(_corrupt_message(path)) from None
    except Exception:  # any other failure of the unpickler (a text file raises IndexError) is not a checkpoint
        raise CheckpointError(_corrupt_message(path)) from None


def _corrupt_message(path: Path) -> str:
    if not zipfile.is_zipfile(path):
        return (
            f"{path} is not a torch checkpoint (not a zip archive written by torch.save): it is corrupt, "
            f"truncated or a different kind of file; copy it again or {_FIX}"
        )
    return f"{path} is a zip archive that torch cannot read as a checkpoint; copy it again or {_FIX}"


def _check_state_dict(
    path: Path, card: ModelCard, state_dict: dict[str, torch.Tensor], when: str
) -> nn.Module:
    """Build the card's architecture and check ``state_dict`` fits it key by key and shape by shape."""
    try:
        model = create_model(card.arch, **card.arch_kwargs)
    except (ConfigError, TypeError) as exc:
        raise CheckpointError(f"{path}: the card's architecture cannot be built ({exc}); {_FIX}") from exc
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    wrong_shape = sorted(
        f"{k} {tuple(state_dict[k].shape)} != {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state_dict and state_dict[k].shape != v.shape
    )
    if missing or unexpected or wrong_shape:
        details = "; ".join(
            f"{label}: {items[:5]}{' ...' if len(items) > 5 else ''}"
            for label, items in (("missing", missing), ("unexpected", unexpected), ("shape", wrong_shape))
            if items
        )
        raise CheckpointError(
            f"{path}: weights do not match {card.arch} {card.arch_kwargs} when {when} ({details}); "
            "make the card's arch_kwargs describe the model that was trained"
        )
    return model
