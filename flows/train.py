"""The ``train-model`` flow: prepare the data split, train, publish the validation metrics as an artifact."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact, create_progress_artifact, update_progress_artifact
from prefect.cache_policies import NO_CACHE

from flows.segment import artifact_key
from pipeline.training.data import LabelSpec, TrainingSource, split_by_area
from pipeline.training.train import TrainConfig, TrainResult, train

__all__ = ["train_model", "metrics_markdown"]


@task(name="prepare-data", cache_policy=NO_CACHE)
def prepare_data(
    scenes: list[str], labels: str, spec: LabelSpec, val_fraction: float, gap: int
) -> tuple[list[TrainingSource], list[TrainingSource]]:
    """Split the scenes by area: by rows of tiles when they form a grid, else each into row bands."""
    return split_by_area([TrainingSource(Path(s), Path(labels), spec) for s in scenes], val_fraction, gap)


@task(name="train", cache_policy=NO_CACHE)
def train_task(
    config: TrainConfig, train_sources: list[TrainingSource], val_sources: list[TrainingSource]
) -> TrainResult:
    """Train and write the best checkpoint, publishing the epochs done as a progress artifact.

    A long task, never retried: a failed run is continued with ``config.resume``.
    """
    artifact = create_progress_artifact(
        0.0, key=artifact_key("train-progress", config.out.stem), description=f"epochs of {config.out} done"
    )

    def on_epoch(entry: dict[str, Any]) -> None:
        update_progress_artifact(artifact, 100.0 * entry["epoch"] / config.epochs)

    return train(config, train_sources, val_sources, progress=False, on_epoch=on_epoch)


def metrics_markdown(result: TrainResult, classes: list[str]) -> str:
    """A markdown report of a run: best epoch, per-class IoU and Dice, and the loss per epoch."""
    best = result.best
    lines = [
        f"# Training: {result.checkpoint.name}",
        "",
        f"Best epoch {best['epoch']} of {len(result.history)}, mean foreground IoU {best['mean_iou']:.4f}"
        f"{' (stopped early)' if result.stopped_early else ''}, {result.seconds:.0f} s.",
        "",
        "| class | IoU | Dice |",
        "| --- | ---: | ---: |",
        *(
            f"| {c} | {best['per_class'][c]['iou']:.4f} | {best['per_class'][c]['dice']:.4f} |"
            for c in classes
        ),
        "",
        "| epoch | train loss | val loss | mean IoU |",
        "| ---: | ---: | ---: | ---: |",
        *(
            f"| {h['epoch']} | {h['train_loss']:.4f} | {h['val_loss']:.4f} | {h['mean_iou']:.4f} |"
            for h in result.history
        ),
    ]
    return "\n".join(lines)


@task(name="report", cache_policy=NO_CACHE)
def report(result: TrainResult, classes: list[str]) -> str:
    """Publish the metrics as a markdown artifact; return its text."""
    text = metrics_markdown(result, classes)
    create_markdown_artifact(
        text,
        key=artifact_key("train", result.checkpoint.stem),
        description=f"validation metrics of {result.checkpoint}",
    )
    return text


@flow(name="train-model", log_prints=True)
def train_model(
    scenes: list[str],
    labels: str,
    config: TrainConfig,
    class_column: str | None = "class",
    layer_classes: dict[str, str] | None = None,
    val_fraction: float = 0.2,
) -> dict[str, Any]:
    """Train a model on ``scenes`` labelled by ``labels``; returns the checkpoint, best metrics and report."""
    spec = LabelSpec(class_column=class_column, layer_classes=layer_classes)
    train_sources, val_sources = prepare_data(scenes, labels, spec, val_fraction, config.tile_size // 2)
    result = train_task(config, train_sources, val_sources)
    text = report(result, config.classes)
    print(f"{result.checkpoint}: best epoch {result.best['epoch']}, mean IoU {result.best['mean_iou']:.4f}")
    return {
        "checkpoint": str(result.checkpoint),
        "best": result.best,
        "epochs": len(result.history),
        "report": text,
    }
