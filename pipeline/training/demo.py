"""Regenerate the packaged demo model ``models/weights/synthetic-demo.pt`` from synthetic scenes.

    python -m pipeline.training.demo --out models/weights/synthetic-demo.pt

Training scenes use seeds 0-31 and validation scenes seeds 900-902; the demo scene (seed 4242)
is never seen. About 15 minutes on one CPU thread (2000 steps of 4 tiles); a GPU is used when there is one.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import torch

from models.augment import Augment
from pipeline.classes import USER_CLASSES
from pipeline.training.data import synthetic_scenes
from pipeline.training.train import TrainConfig, train

__all__ = ["demo_config", "main"]

log = logging.getLogger(__name__)

TRAIN_SEEDS = range(0, 32)
VAL_SEEDS = range(900, 903)
SCENE_SIZE = 1024


def demo_config(out: Path, epochs: int = 40, steps_per_epoch: int = 50) -> TrainConfig:
    """The demo model's training settings."""
    return TrainConfig(
        arch="unet",
        arch_kwargs={"base_channels": 8, "depth": 4},
        classes=list(USER_CLASSES),
        bands=[1, 2, 3],
        tile_size=192,
        inference_tile_size=512,
        context_margin=24,
        batch_size=4,
        epochs=epochs,
        steps_per_epoch=steps_per_epoch,
        lr=2e-3,
        warmup_steps=50,
        loss="ce",
        dice_weight=1.0,
        augment=Augment(
            flip_rot90=True,
            elastic_p=0.25,
            elastic_alpha=20.0,
            elastic_sigma=5.0,
            brightness=0.15,
            contrast=0.15,
        ),
        seed=0,
        val_tiles=36,
        out=out,
        description="synthetic demo model: seeded synthetic scenes (pipeline.synthetic), never seed 4242",
    )


def main(argv: list[str] | None = None) -> int:
    """Write the synthetic scenes and train the demo model."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("models/weights/synthetic-demo.pt"))
    parser.add_argument(
        "--data",
        type=Path,
        default=Path("/tmp/sceneseg-synthetic"),
        help="Folder for the synthetic training scenes (reused when present).",
    )
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--steps-per-epoch", type=int, default=50)
    # One thread: on a shared 2-core machine two OpenMP threads thrash whenever another process holds a
    # core, and one thread keeps the run bit-for-bit repeatable.
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for torch.")
    parser.add_argument("--resume", action="store_true", help="Continue from <out>.last.pt.")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s", stream=sys.stdout)
    for name in ("pipeline.training.train", __name__):
        logging.getLogger(name).setLevel(logging.INFO)
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    sources_train = synthetic_scenes(args.data, seeds=TRAIN_SEEDS, size=SCENE_SIZE)
    sources_val = synthetic_scenes(args.data, seeds=VAL_SEEDS, size=SCENE_SIZE)
    log.info(
        "%d training and %d validation scenes ready in %.0f s",
        len(sources_train),
        len(sources_val),
        time.perf_counter() - t0,
    )
    config = demo_config(args.out, args.epochs, args.steps_per_epoch).model_copy(
        update={"resume": args.resume}
    )
    result = train(config, sources_train, sources_val, progress=False)
    log.info(
        "best epoch %d: %s",
        result.best["epoch"],
        {c: round(v["iou"], 4) for c, v in result.best["per_class"].items()},
    )
    log.info(
        "wrote %s (%.2f MB) in %.0f s",
        result.checkpoint,
        result.checkpoint.stat().st_size / 1e6,
        result.seconds,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
