"""Train the shipped Banepa building model: a pretrained EfficientNet-Lite0 U-Net with instance targets.

    python -m pipeline.training.banepa --data ../shared/data/banepa \\
        --out models/weights/buildings-banepa.pt --work /tmp/sceneseg-buildings --epochs 9 --steps-per-epoch 100

Across ground sample distances (the recipe since issue 21): each crop has a 60 % chance of being resampled
to a GSD drawn log-uniform from 0.075-0.6 m (``GSD_RANGE_M``; GDAL average down, bilinear up) with its
targets rasterized at that GSD, from a mosaic of the training rows (a 256-pixel crop at 0.6 m covers 1,160
pixels of the 0.13 m tiles); the card records the range, so ``sceneseg segment`` reads a 0.3-0.5 m scene at
its own resolution. Wider photometric augmentation (hue, brightness, contrast, blur, noise), an exponential
moving average of the weights (decay 0.99 a step) as the validated and shipped weights, bf16 autocast where
the CPU has it natively (``--precision auto``). Model selection averages the validation row's F1 at its
native GSD and resampled to 0.4 m. The issue-21 run fine-tuned the previously shipped model:

    python -m pipeline.training.banepa --init <previous buildings-banepa.pt> --seed 21 --epochs 6 \\
        --steps-per-epoch 60 --lr 5e-4 --encoder-lr 2e-4 --work /tmp/train-work/run \\
        --out /tmp/train-work/run/buildings-banepa.pt

The first recipe (one GSD): 900 steps of batch 8 took 68 minutes on 2 CPU cores shared with other work
(3-10 s a step; about 2.2 s uncontended). That run was started with --epochs 11 and resumed (--resume) with
--epochs 8 after epoch 4 and --epochs 9 after epoch 6 to fit the time available: the learning-rate schedule
is a function of the step and the total, so it jumped down twice. --tune-only redoes the tuning and the
choice of the shipped weights without training.

Imagery: OpenAerialMap (CC-BY-4.0). Building footprints: (c) OpenStreetMap contributors (ODbL).

Split by tile rows of the 6 x 6 tiles, so that neither held-out row touches a training pixel: rows
220241-220243 and the upper half of each tile of row 220244 train; the lower half of row 220244 is a gap of
256 pixels (about 33 m); row 220245 is the test row (scored once, at the end) and row 220246 validates
(model selection and threshold tuning).

Targets: classes background, building (interior), building_boundary, building_contact
(:mod:`pipeline.training.targets`). Each evaluation scores building F1 at IoU >= 0.5 through the real
instance separation (:func:`pipeline.vectors.instances.separate_buildings`) and vector stage
(:func:`pipeline.vectors.vectorize_scene`) on the whole validation row, and the best checkpoint is the
one with the best F1 (at fixed separation settings). After training the separation thresholds are tuned
on the validation row for that checkpoint and for the final epoch's weights; the better tuned validation F1
is shipped, with its thresholds in the card (``ModelCard.separation``). The test row is scored once, after
that choice. Loss and validation scores per evaluation go to ``<work>/history.json``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import rasterio
import shapely
import torch
from affine import Affine
from rasterio.enums import Resampling
from rasterio.warp import reproject

from models.augment import Augment
from models.checkpoint import load_checkpoint, save_checkpoint
from models.factory import create_model
from pipeline.grid import GeoGrid, Region, Shape2d
from pipeline.metrics import match_buildings
from pipeline.raster.read import normalize
from pipeline.training.data import LabelSpec, TrainingSource
from pipeline.training.targets import BOUNDARY, CONTACT, InstanceTargets, pixel_size_m
from pipeline.training.train import TrainConfig, last_checkpoint_path, train
from pipeline.vectors import VectorSettings, vectorize_scene
from pipeline.vectors.instances import separate_buildings

__all__ = [
    "LABELS",
    "CREDIT",
    "tile_row",
    "CLASSES",
    "TRAIN_ROWS",
    "GAP_ROW",
    "TEST_ROWS",
    "VAL_ROWS",
    "Separation",
    "RowScene",
    "split_sources",
    "load_row",
    "predict",
    "row_buildings",
    "score_row",
    "tune_separation",
    "buildings_config",
    "main",
]

log = logging.getLogger(__name__)

CLASSES = ["background", "building", BOUNDARY, CONTACT]
TRAIN_ROWS = (220241, 220242, 220243)
GAP_ROW = 220244  # its upper half trains; its lower half keeps the test row from touching training
TEST_ROWS = (220245,)
VAL_ROWS = (220246,)
TARGETS = InstanceTargets(boundary_m=0.4, contact_m=0.5)
#: Ground sample distances the model is trained across (drone to satellite).
GSD_RANGE_M = (0.075, 0.6)
#: The validation row is also scored resampled to these GSDs in model selection.
VAL_GSDS_M = (0.4,)
LABELS = LabelSpec(class_column=None, layer_classes={"buildings": "building"})
CREDIT = "Imagery: OpenAerialMap (CC-BY-4.0); building footprints: (c) OpenStreetMap contributors (ODbL)"


def tile_row(path: Path) -> int:
    """The row (y) of a web-map tile named ``OAM-x-y-z.tif``."""
    match = re.fullmatch(r"OAM-(\d+)-(\d+)-(\d+)\.tif", path.name)
    if match is None:
        raise ValueError(f"{path.name} is not named OAM-x-y-z.tif")
    return int(match.group(2))


@dataclass(frozen=True)
class Separation:
    """Post-processing of the instance classes into buildings (stored in the card as a dict)."""

    seed_confidence: float = 0.7
    min_seed_m2: float = 1.0
    grow_m: float = 3.0
    min_building_area_m2: float = 6.0

    def as_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in self.__dict__.items()}


@dataclass
class RowScene:
    """A row of tiles mosaicked into one scene, with its true buildings in a metric CRS."""

    image: np.ndarray  # (bands, rows, cols) raw
    transform: Affine
    crs: Any
    truth: gpd.GeoDataFrame  # projected (UTM)

    @property
    def shape(self) -> Shape2d:
        return Shape2d(self.image.shape[1], self.image.shape[2])


def split_sources(data: Path) -> tuple[list[TrainingSource], list[TrainingSource], list[TrainingSource]]:
    """Training, validation and test sources of the Banepa tiles (see the module docstring)."""
    tiles = sorted((data / "tiles").glob("OAM-*.tif"))
    labels = data / "buildings.gpkg"
    train_src = [TrainingSource(t, labels, LABELS) for t in tiles if tile_row(t) in TRAIN_ROWS]
    for t in tiles:
        if tile_row(t) == GAP_ROW:
            with rasterio.open(t) as ds:
                train_src.append(TrainingSource(t, labels, LABELS, Region(0, 0, ds.height // 2, ds.width)))
    val = [TrainingSource(t, labels, LABELS) for t in tiles if tile_row(t) in VAL_ROWS]
    test = [TrainingSource(t, labels, LABELS) for t in tiles if tile_row(t) in TEST_ROWS]
    return train_src, val, test


def training_mosaic(data: Path, work: Path) -> TrainingSource:
    """The training rows (and the upper half of the gap row) as one GeoTIFF in ``work``, so a crop may cover
    more ground than one 512-pixel tile: a 256-pixel crop at 0.6 m reads 1,160 pixels of the 0.13 m tiles.

    The rows are stacked on the top row's grid: their pixel heights differ by 6e-6 of a pixel per row, under
    0.02 pixel over the mosaic.
    """
    rows = [load_row(data, r) for r in TRAIN_ROWS]
    gap = load_row(data, GAP_ROW)
    image = np.concatenate([r.image for r in rows] + [gap.image[:, : gap.shape.rows // 2]], axis=1)
    path = work / "train-mosaic.tif"
    profile = dict(driver="GTiff", width=image.shape[2], height=image.shape[1], count=image.shape[0],
                   dtype=image.dtype.name, crs=rows[0].crs, transform=rows[0].transform, tiled=True,
                   compress="deflate")
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(image)
    return TrainingSource(path, data / "buildings.gpkg", LABELS)


def resample_row(scene: RowScene, gsd_m: float) -> RowScene:
    """The row on pixels of ``gsd_m`` metres (GDAL average down, bilinear up), as ``bench/banepa.py`` writes
    it for ``sceneseg segment``; the truth is the same."""
    factor = gsd_m / pixel_size_m(scene.transform, scene.crs, scene.shape)
    shape = Shape2d(round(scene.shape.rows / factor), round(scene.shape.cols / factor))
    transform = scene.transform @ Affine.scale(scene.shape.cols / shape.cols, scene.shape.rows / shape.rows)
    image = np.zeros((scene.image.shape[0], shape.rows, shape.cols), dtype=scene.image.dtype)
    reproject(scene.image, image, src_transform=scene.transform, src_crs=scene.crs, dst_transform=transform,
              dst_crs=scene.crs, resampling=Resampling.average if factor > 1 else Resampling.bilinear)
    return RowScene(image, transform, scene.crs, scene.truth)


def load_row(data: Path, row: int, bands: Sequence[int] = (1, 2, 3)) -> RowScene:
    """The tiles of one row side by side (west to east) as one scene, and OSM buildings clipped to it."""
    tiles = sorted((t for t in (data / "tiles").glob("OAM-*.tif") if tile_row(t) == row),
                   key=lambda p: int(p.name.split("-")[1]))
    images, transform, crs = [], None, None
    for t in tiles:
        with rasterio.open(t) as ds:
            if transform is None:
                transform, crs = ds.transform, ds.crs
            images.append(ds.read(list(bands)))
    image = np.concatenate(images, axis=2)
    rows, cols = image.shape[1:]
    bounds = rasterio.transform.array_bounds(rows, cols, transform)
    truth = gpd.read_file(data / "buildings.gpkg", layer="buildings", engine="pyogrio").to_crs(crs)
    clipped = shapely.clip_by_rect(truth.geometry.values, *bounds)
    clipped = clipped[~shapely.is_empty(clipped) & (shapely.area(clipped) > 0)]
    truth = gpd.GeoDataFrame(geometry=clipped, crs=crs)
    return RowScene(image, transform, crs, truth.to_crs(truth.estimate_utm_crs()))


@torch.no_grad()
def predict(model: torch.nn.Module, scene: RowScene, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """Softmax probabilities (classes, rows, cols) float32 of the whole scene in one forward."""
    model.eval()
    x = torch.from_numpy(np.ascontiguousarray(normalize(scene.image, np.asarray(mean), np.asarray(std)), dtype=np.float32))[None]
    return model(x.contiguous(memory_format=torch.channels_last)).float().softmax(dim=1)[0].numpy()


def _mask_confidence(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The working store's uint8 argmax mask and winning probability x 255."""
    mask = probs.argmax(axis=0).astype(np.uint8)
    confidence = np.clip(np.round(probs.max(axis=0) * 255), 0, 255).astype(np.uint8)
    return mask, confidence


def row_buildings(
    mask: np.ndarray, confidence: np.ndarray, scene: RowScene, separation: Separation, min_area_m2: float
) -> gpd.GeoDataFrame:
    """Building polygons (scene CRS, with area_m2) through separation and the vector stage."""
    px_m = pixel_size_m(scene.transform, scene.crs, scene.shape)
    separated = separate_buildings(
        mask, confidence, interior_id=CLASSES.index("building"), boundary_id=CLASSES.index(BOUNDARY),
        contact_id=CLASSES.index(CONTACT), seed_confidence=separation.seed_confidence,
        min_seed_px=max(1, round(separation.min_seed_m2 / px_m**2)), grow_px=separation.grow_m / px_m,
    )
    layers = vectorize_scene(
        lambda w: (separated[w.row : w.row_stop, w.col : w.col_stop], confidence[w.row : w.row_stop, w.col : w.col_stop]), GeoGrid(scene.shape, scene.transform, scene.crs.to_wkt()), classes={1: "building"},
        settings=VectorSettings(min_building_area_m2=min_area_m2),
    )
    return layers.buildings


def _f1(buildings: gpd.GeoDataFrame, scene: RowScene, min_area_m2: float) -> dict[str, float]:
    kept = buildings[buildings["area_m2"] >= min_area_m2] if len(buildings) else buildings
    pred = kept.to_crs(scene.truth.crs) if len(kept) else gpd.GeoSeries([], crs=scene.truth.crs)
    s = match_buildings(pred, scene.truth, 0.5)
    return {"f1": s.f1, "precision": s.precision, "recall": s.recall, "tp": s.tp, "fp": s.fp, "fn": s.fn,
            "predicted": len(kept), "true": len(scene.truth)}


def score_plain(probs: np.ndarray, scene: RowScene, min_area_m2: float) -> dict[str, float]:
    """Building F1 without instance separation: interior and boundary folded to building, components kept."""
    mask, confidence = _mask_confidence(probs)
    folded = np.isin(mask, (CLASSES.index("building"), CLASSES.index(BOUNDARY))).astype(np.uint8)
    layers = vectorize_scene(
        lambda w: (folded[w.row : w.row_stop, w.col : w.col_stop], confidence[w.row : w.row_stop, w.col : w.col_stop]), GeoGrid(scene.shape, scene.transform, scene.crs.to_wkt()), classes={1: "building"},
        settings=VectorSettings(min_building_area_m2=min_area_m2),
    )
    return _f1(layers.buildings, scene, min_area_m2)


def score_row(probs: np.ndarray, scene: RowScene, separation: Separation) -> dict[str, float]:
    """Building F1 at IoU >= 0.5 of one row under ``separation``."""
    mask, confidence = _mask_confidence(probs)
    buildings = row_buildings(mask, confidence, scene, separation, separation.min_building_area_m2)
    return _f1(buildings, scene, separation.min_building_area_m2)


def tune_separation(
    probs: np.ndarray,
    scene: RowScene,
    seeds: Sequence[float] = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8),
    min_seeds_m2: Sequence[float] = (0.25, 0.5, 1.0, 2.0, 3.0, 4.0),
    min_areas_m2: Sequence[float] = (2.0, 4.0, 6.0, 8.0, 10.0, 14.0, 20.0, 25.0),
    grows_m: Sequence[float] = (2.0, 3.0, 4.0),
) -> tuple[Separation, list[dict[str, Any]]]:
    """The separation with the best F1 on ``scene`` over a grid, and every grid point's scores.

    The smallest building area only filters polygons, so each (seed, min seed, grow) is vectorized once.
    """
    mask, confidence = _mask_confidence(probs)
    trials = []
    for seed, min_seed, grow_m in itertools.product(seeds, min_seeds_m2, grows_m):
        sep = Separation(seed, min_seed, grow_m, min(min_areas_m2))
        buildings = row_buildings(mask, confidence, scene, sep, min(min_areas_m2))
        for area in min_areas_m2:
            trials.append({**replace(sep, min_building_area_m2=area).as_dict(), **_f1(buildings, scene, area)})
    best = max(trials, key=lambda t: (t["f1"], -t["min_building_area_m2"]))
    return Separation(best["seed_confidence"], best["min_seed_m2"], best["grow_m"],
                      best["min_building_area_m2"]), trials


def make_score_fn(scene: RowScene, seeds: Sequence[float] = (0.5, 0.7, 0.9), gsds_m: Sequence[float] = ()):
    """The model-selection metric: the best building F1 on the validation row over a few seed thresholds,
    averaged with the same on the row resampled to each of ``gsds_m`` (a model trained across GSDs)."""
    scenes = {"native": scene, **{f"{g:g}m": resample_row(scene, g) for g in gsds_m}}

    def score(model: torch.nn.Module, mean: list[float], std: list[float]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, row in scenes.items():
            probs = predict(model, row, mean, std)
            results = {f"seed_{s}": score_row(probs, row, Separation(seed_confidence=s)) for s in seeds}
            out[name] = {"score": max(r["f1"] for r in results.values()), **results}
        return {"score": float(np.mean([r["score"] for r in out.values()])), **out}

    return score


def buildings_config(out: Path, epochs: int, steps_per_epoch: int, pretrained: bool = True) -> TrainConfig:
    """The recipe of the shipped model."""
    return TrainConfig(
        arch="effunet-lite0",
        arch_kwargs={"decoder_channels": [128, 64, 48, 32, 16]},
        pretrained=pretrained,
        classes=CLASSES,
        bands=[1, 2, 3],
        tile_size=256,
        inference_tile_size=512,
        # Lite0's theoretical receptive field is hundreds of pixels, but its useful context is far less;
        # 64 px (8 m here) on each side, an overlap of 128 in 512-pixel tiles.
        context_margin=64,
        batch_size=8,
        epochs=epochs,
        steps_per_epoch=steps_per_epoch,
        lr=1e-3,
        encoder_lr=3e-4,
        weight_decay=1e-4,
        warmup_steps=50,
        loss="ce",
        dice_weight=1.0,
        class_weights=[1.0, 1.0, 3.0, 3.0],
        # Photometric ranges wide enough for shadows, asphalt and red soil under other light (hue, brightness),
        # and for soft or noisy imagery (blur, noise).
        augment=Augment(
            flip_rot90=True,
            elastic_p=0.2,
            elastic_alpha=20.0,
            elastic_sigma=6.0,
            brightness=0.3,
            contrast=0.3,
            scale=0.2,
            colour_gain=0.15,
            saturation=0.3,
            hue_degrees=25.0,
            blur_p=0.3,
            blur_sigma=1.5,
            noise=0.08,
        ),
        # One model for drone and satellite scenes: 60 % of the crops at a GSD drawn from the range.
        gsd_range_m=GSD_RANGE_M,
        gsd_p=0.6,
        ema_decay=0.99,
        instance_targets=TARGETS,
        channels_last=True,
        seed=0,
        val_tiles=None,
        out=out,
        description=f"Banepa buildings, EfficientNet-Lite0 U-Net (ImageNet), instance targets; {CREDIT}",
    )


def main(argv: list[str] | None = None) -> int:
    """Train, tune the separation on the validation row, score the test row once; print a JSON report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_data = Path(__file__).resolve().parents[3] / "shared" / "data" / "banepa"
    parser.add_argument("--data", type=Path, default=default_data)
    parser.add_argument("--out", type=Path, default=Path("models/weights/buildings-banepa.pt"))
    parser.add_argument("--work", type=Path, default=Path("/tmp/sceneseg-buildings"))
    parser.add_argument("--epochs", type=int, default=14)
    parser.add_argument("--steps-per-epoch", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--scratch", action="store_true", help="Encoder from random weights (comparison).")
    parser.add_argument("--resume", action="store_true", help="Continue from <work>/buildings.last.pt.")
    parser.add_argument("--init", type=Path, help="Fine-tune: start from this checkpoint's weights "
                        "(e.g. the shipped model) with a fresh schedule.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of tile sampling and augmentation "
                        "(give a fine-tuning run another one, so it sees other crops).")
    parser.add_argument("--lr", type=float, help="Peak learning rate of the decoder [default: the recipe's].")
    parser.add_argument("--encoder-lr", type=float, help="Peak learning rate of the encoder [default: the recipe's].")
    parser.add_argument("--class-weights", type=float, nargs=4, metavar=("BG", "BUILDING", "BOUNDARY", "CONTACT"),
                        help="Cross-entropy class weights [default: the recipe's 1 1 3 3].")
    parser.add_argument("--contact-m", type=float, help=f"Contact gap in metres [default: {TARGETS.contact_m}].")
    parser.add_argument("--boundary-m", type=float, help=f"Boundary width in metres [default: {TARGETS.boundary_m}].")
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                        help="Training autocast: auto is bf16 on a CPU with native bf16 and on CUDA, else fp32.")
    parser.add_argument(
        "--read-at-training-gsd", action="store_true",
        help="Leave the GSD range out of the shipped card, so inference resamples every scene to the training "
        "GSD (0.132 m) instead of reading a 0.075-0.6 m scene at its own resolution: what issue 21 shipped, "
        "because its model scored lower at its own 0.3 / 0.5 m than read at 0.132 m (see bench/RESULTS.md).",
    )
    parser.add_argument(
        "--tune-only", action="store_true",
        help="Skip training: tune the separation and score the test row with <work>/buildings.pt as it is.",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s", stream=sys.stdout)
    for name in ("pipeline.training.train", __name__):
        logging.getLogger(name).setLevel(logging.INFO)
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    args.work.mkdir(parents=True, exist_ok=True)
    train_src, val_src, test_src = split_sources(args.data)
    log.info("%d training, %d validation, %d test tiles", len(train_src), len(val_src), len(test_src))
    val_scene = load_row(args.data, VAL_ROWS[0])
    config = buildings_config(args.work / "buildings.pt", args.epochs, args.steps_per_epoch, not args.scratch)
    targets = InstanceTargets(boundary_m=TARGETS.boundary_m if args.boundary_m is None else args.boundary_m,
                              contact_m=TARGETS.contact_m if args.contact_m is None else args.contact_m)
    optional = (("lr", args.lr), ("encoder_lr", args.encoder_lr), ("class_weights", args.class_weights))
    overrides = {"resume": args.resume, "seed": args.seed, "init": args.init, "instance_targets": targets,
                 "precision": args.precision, **{k: v for k, v in optional if v is not None}}
    config = TrainConfig.model_validate({**config.model_dump(), **overrides})
    history_path = args.work / "history.json"
    history: list[dict[str, Any]] = []
    if args.resume and history_path.is_file():  # a resumed run continues its history
        history = json.loads(history_path.read_text())

    def on_epoch(entry: dict[str, Any]) -> None:
        history.append(entry)
        history_path.write_text(json.dumps(history, indent=1, default=float))
        sel = entry.get("selection", {})
        log.info("epoch %d validation F1 %.4f %s", entry["epoch"], entry["score"],
                 {k: round(v["score"], 4) for k, v in sel.items() if isinstance(v, dict)})

    if args.tune_only:
        checkpoint, best_epoch = config.out, load_checkpoint(config.out).card.training.get("best", {}).get("epoch")
    else:
        # Crops at coarse GSDs cover more ground than one tile: the training rows as one mosaic.
        mosaic = [training_mosaic(args.data, args.work)] if config.gsd_range_m else train_src
        score_fn = make_score_fn(val_scene, gsds_m=VAL_GSDS_M if config.gsd_range_m else ())
        result = train(config, mosaic, val_src, progress=False, on_epoch=on_epoch, score_fn=score_fn)
        checkpoint, best_epoch = result.checkpoint, result.best["epoch"]
    train_seconds = time.perf_counter() - t0
    loaded = load_checkpoint(checkpoint)
    if args.tune_only:  # the time the training run took to its selected epoch
        train_seconds = loaded.card.training.get("seconds", train_seconds)
    card = loaded.card
    # Candidates: the checkpoint selected during training (building F1 at fixed separation settings) and
    # the final epoch's weights; each is tuned on the validation row and the better tuned F1 is shipped.
    candidates = {best_epoch: loaded.model}
    last_path = last_checkpoint_path(config.out)
    if last_path.is_file():
        state = torch.load(last_path, map_location="cpu", weights_only=True)
        if state["epoch"] != best_epoch:
            final = create_model(card.arch, **card.arch_kwargs)
            final.load_state_dict(state.get("ema", state["model"]))  # the averaged weights, where kept
            candidates[state["epoch"]] = final.eval()
    tuned_by_epoch = {}
    for epoch, model in candidates.items():
        probs = predict(model, val_scene, card.mean, card.std)
        separation, trials = tune_separation(probs, val_scene)
        tuned_by_epoch[epoch] = (score_row(probs, val_scene, separation), separation, trials, probs)
        log.info("epoch %s: tuned validation F1 %.4f with %s", epoch, tuned_by_epoch[epoch][0]["f1"],
                 separation.as_dict())
    shipped_epoch = max(tuned_by_epoch, key=lambda e: (tuned_by_epoch[e][0]["f1"], e == best_epoch))
    val_scores, separation, trials, val_probs = tuned_by_epoch[shipped_epoch]
    model = candidates[shipped_epoch]
    val_plain = score_plain(val_probs, val_scene, separation.min_building_area_m2)
    test_scene = load_row(args.data, TEST_ROWS[0])
    test_scores = score_row(predict(model, test_scene, card.mean, card.std), test_scene, separation)
    training = {
        **card.training, "train_seconds": round(train_seconds), "separation_trials": len(trials),
        "shipped_epoch": shipped_epoch,
        "tuned_validation_f1_by_epoch": {str(e): t[0]["f1"] for e, t in tuned_by_epoch.items()},
        "validation_buildings": val_scores, "validation_without_separation": val_plain,
        "test_buildings": test_scores,
    }
    update: dict[str, Any] = {"separation": separation.as_dict(), "training": training}
    if args.read_at_training_gsd and card.gsd_range_m is not None:
        update["gsd_range_m"] = None
        training["gsd_range_m_left_out"] = (f"trained across {card.gsd_range_m} m, but shipped to read every scene "
                                            f"at {card.gsd_m:.3f} m (--read-at-training-gsd)")
    tuned = card.model_copy(update=update)
    (args.work / "tuning.json").write_text(json.dumps(trials, indent=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(args.out, model, tuned)
    report = {
        "checkpoint": str(args.out),
        "best_epoch": best_epoch,
        "shipped_epoch": shipped_epoch,
        "tuned_validation_f1_by_epoch": training["tuned_validation_f1_by_epoch"],
        "separation": separation.as_dict(),
        "validation": val_scores,
        "validation_without_separation": val_plain,
        "test": test_scores,
        "train_seconds": round(train_seconds),
        "seconds": round(time.perf_counter() - t0),
        "size_mb": round(args.out.stat().st_size / 1e6, 2),
    }
    (args.work / "report.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
