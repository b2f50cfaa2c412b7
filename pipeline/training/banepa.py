"""Train U-Net and U-Net++ on the Banepa tiles on one budget; keep the better as ``buildings-banepa.pt``.

    python -m pipeline.training.banepa --data ../shared/data/banepa --out models/weights/buildings-banepa.pt

Imagery: OpenAerialMap (CC-BY-4.0). Building footprints: (c) OpenStreetMap contributors (ODbL).

The 6 x 6 tiles (``OAM-x-y-19.tif``) are split by tile rows so that training and validation never touch:
rows 220241-220244 train, row 220246 validates (model selection), and row 220245, between them, is held out
as a test row scored once at the end. Both architectures get the same steps, tiles, batch and seed.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import shutil
import sys
import time
from pathlib import Path

import torch

from models.augment import Augment
from models.checkpoint import load_checkpoint
from pipeline.training.data import LabelSpec, SceneData, TrainingSource, ValidationTiles
from pipeline.training.train import TrainConfig, evaluate, train

__all__ = ["TRAIN_ROWS", "VAL_ROWS", "TEST_ROWS", "tile_row", "banepa_sources", "banepa_config", "main"]

log = logging.getLogger(__name__)

TRAIN_ROWS = (220241, 220242, 220243, 220244)
TEST_ROWS = (220245,)
VAL_ROWS = (220246,)
CLASSES = ["background", "building"]
LABELS = LabelSpec(class_column=None, layer_classes={"buildings": "building"})
CREDIT = "Imagery: OpenAerialMap (CC-BY-4.0); building footprints: (c) OpenStreetMap contributors (ODbL)"


def tile_row(path: Path) -> int:
    """The row (y) of a web-map tile named ``OAM-x-y-z.tif``."""
    match = re.fullmatch(r"OAM-(\d+)-(\d+)-(\d+)\.tif", path.name)
    if match is None:
        raise ValueError(f"{path.name} is not named OAM-x-y-z.tif")
    return int(match.group(2))


def banepa_sources(data: Path, rows: tuple[int, ...]) -> list[TrainingSource]:
    """The tiles of the given rows, labelled by the ``buildings`` layer of ``buildings.gpkg``."""
    tiles = sorted((data / "tiles").glob("OAM-*.tif"))
    return [TrainingSource(t, data / "buildings.gpkg", LABELS) for t in tiles if tile_row(t) in rows]


def banepa_config(arch: str, out: Path, epochs: int, steps_per_epoch: int) -> TrainConfig:
    """The shared settings: only the architecture differs between the two runs."""
    return TrainConfig(
        arch=arch,
        arch_kwargs={"base_channels": 8, "depth": 4},
        classes=CLASSES,
        bands=[1, 2, 3],
        tile_size=256,
        inference_tile_size=512,
        context_margin=24,
        batch_size=4,
        epochs=epochs,
        steps_per_epoch=steps_per_epoch,
        lr=3e-3,
        warmup_steps=20,
        loss="ce",
        dice_weight=1.0,
        augment=Augment(
            flip_rot90=True,
            elastic_p=0.2,
            elastic_alpha=20.0,
            elastic_sigma=6.0,
            brightness=0.15,
            contrast=0.15,
        ),
        seed=0,
        val_tiles=None,
        out=out,
        description=f"Banepa buildings, {arch}; {CREDIT}",
    )


def main(argv: list[str] | None = None) -> int:
    """Train both architectures, score them, keep the better; print a JSON report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # The data set lives in shared/ beside the checkout (as in CI), not inside the repository.
    default_data = Path(__file__).resolve().parents[2] / "shared" / "data" / "banepa"
    parser.add_argument("--data", type=Path, default=default_data)
    parser.add_argument("--out", type=Path, default=Path("models/weights/buildings-banepa.pt"))
    parser.add_argument(
        "--work", type=Path, default=Path("/tmp/sceneseg-banepa"), help="Folder for both runs' checkpoints."
    )
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--steps-per-epoch", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for torch (one: see train_demo).")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s", stream=sys.stdout)
    for name in ("pipeline.training.train", __name__):
        logging.getLogger(name).setLevel(logging.INFO)
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    train_src = banepa_sources(args.data, TRAIN_ROWS)
    val_src = banepa_sources(args.data, VAL_ROWS)
    test_src = banepa_sources(args.data, TEST_ROWS)
    log.info("%d training, %d validation, %d test tiles", len(train_src), len(val_src), len(test_src))
    reports = {}
    for arch in ("unet", "unetpp"):
        config = banepa_config(arch, args.work / f"banepa-{arch}.pt", args.epochs, args.steps_per_epoch)
        result = train(config, train_src, val_src, progress=False)
        loaded = load_checkpoint(result.checkpoint)
        card = loaded.card
        test_tiles = ValidationTiles(
            [SceneData(s, CLASSES, card.bands) for s in test_src], config.tile_size, card.mean, card.std
        )
        test = evaluate(loaded.model, test_tiles, config, torch.device("cpu"))
        reports[arch] = {
            "checkpoint": str(result.checkpoint),
            "seconds": round(result.seconds, 1),
            "best_epoch": result.best["epoch"],
            "val_building": result.best["per_class"]["building"],
            "test_building": test["per_class"]["building"],
            "size_mb": round(result.checkpoint.stat().st_size / 1e6, 2),
        }
        log.info("%s: %s", arch, json.dumps(reports[arch]))
    best = max(reports, key=lambda a: reports[a]["val_building"]["iou"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(reports[best]["checkpoint"], args.out)
    log.info(
        "kept %s as %s (validation building IoU %.4f)", best, args.out, reports[best]["val_building"]["iou"]
    )
    print(
        json.dumps({"kept": best, "reports": reports, "seconds": round(time.perf_counter() - t0)}, indent=2)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
