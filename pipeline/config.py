"""The settings of one segmentation run, validated once and saved as JSON beside the outputs."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = ["SegmentConfig", "DEFAULT_MODEL", "DEMO_MODEL", "DEFAULT_MODEL_REASON", "DEFAULTS"]

#: The packaged model a run uses when none is given: the building model trained on real aerial imagery.
DEFAULT_MODEL = "buildings-banepa"
#: The packaged model of ``sceneseg demo``: trained on the synthetic scenes the demo writes (noise on real ones).
DEMO_MODEL = "synthetic-demo"
#: Scenes the nightly flow segments at once (each holds its blocks in flight; the GeoPackage has one writer).
MAX_CONCURRENT_SCENES = 2
#: Why a run without a given model runs DEFAULT_MODEL, as its run JSON and summary say.
DEFAULT_MODEL_REASON = "default model for real scenes"


class SegmentConfig(BaseModel):
    """Everything that decides a run's outputs and how it executes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field(DEFAULT_MODEL, description="Checkpoint path, or the name of a packaged model.")
    model_reason: str = Field(
        DEFAULT_MODEL_REASON, description="Why this model runs, recorded in the run JSON: the default when no "
        "model is given, \"model given\" when one is (callers may say more, e.g. \"--model given\").",
    )
    tile_size: int | None = Field(None, ge=16, description="Tile side in pixels (default: the checkpoint's).")
    overlap: int | None = Field(
        None, ge=0, description="Pixels shared by neighbouring tiles (default: twice the checkpoint's context margin)."
    )
    block_size: int = Field(2048, ge=16, description="Block side in pixels, rounded to a whole number of tile strides.")
    batch_size: int | None = Field(
        None, ge=1, description="Tiles per forward pass (default: 1 on the CPU, where it is fastest, 4 on CUDA)."
    )
    device: str = Field("auto", description="auto, cpu, cuda or cuda:N.")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="auto is bf16 autocast on CUDA and fp32 on CPU."
    )
    compile: bool = Field(False, description="torch.compile the model (pays a warm-up per process).")
    resample: bool = Field(
        True, description="Read a scene whose ground sample distance differs from the model's by more than 10 % "
        "resampled to the model's; the mask is written back on the scene's own grid (--no-resample: off).",
    )
    tta: bool = Field(
        False, description="Test-time augmentation: average the eight flips and 90-degree rotations of each tile "
        "(8 forwards per tile)."
    )
    max_in_flight: int = Field(2, ge=1, description="Blocks read, inferred or blended at once: bounds memory; on the CPU also the forwards "
                    "run side by side.")
    torch_threads: int | None = Field(
        None, ge=1, description="torch threads per CPU forward (default: the cores shared among the blocks in flight)."
    )
    dask_address: str | None = Field(None, description="tcp://host:8786 of a Dask scheduler; none runs in-process.")
    output_crs: str | None = Field(None, description="CRS of the vector layers (default: the scene's).")
    write_confidence: bool = Field(False, description="Also write a confidence GeoTIFF (probability x 255).")
    min_building_area_m2: float | None = Field(
        None, ge=0, description="Smaller buildings are dropped as specks (default: the model card's, else 4)."
    )
    seed_confidence: float | None = Field(
        None, gt=0, le=1, description="Instance models: least interior probability of a building seed "
        "(default: the model card's).",
    )
    min_seed_m2: float | None = Field(
        None, ge=0, description="Instance models: smallest building seed in m^2 (default: the model card's)."
    )
    vector_chunk_size: int = Field(
        2048, ge=64, description="Side of the mask chunks polygonized at once (the layers do not depend on it)."
    )
    vector_processes: int | None = Field(
        None, ge=1, description="Vector chunk processes at once (default: 1 when the CPU runs the model, the "
        "cores the GPUs leave, at most 8, when this machine's GPUs run it).",
    )
    overwrite: bool = Field(False, description="Replace existing outputs of the same scene.")
    changes: bool = Field(
        True, description="Compare the scene's buildings and roads with the overlapping scenes published before and "
        "after it into the building_changes layer (--no-changes: off).",
    )
    rescale: bool = Field(
        False, description="Map a scene whose values do not fit the model's input range linearly onto that range."
    )

    @model_validator(mode="before")
    @classmethod
    def _why_this_model(cls, data: Any) -> Any:
        """A model of None is no model given; a model given without a reason is recorded as given."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if data.get("model") is None:
            data.pop("model", None)
        elif data.get("model_reason") is None:
            data["model_reason"] = "model given"
        if data.get("model_reason") is None:
            data.pop("model_reason", None)
        return data

    @field_validator("dask_address")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        if value is not None and "://" not in value:
            raise ValueError(f"--dask-address {value!r} needs a scheme, e.g. tcp://{value}")
        return value


#: Every option's default: the CLI's and the benchmarks' defaults come from here, so they cannot drift.
DEFAULTS: dict[str, object] = {name: field.default for name, field in SegmentConfig.model_fields.items()}
