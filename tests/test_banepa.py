"""The building script's scoring: separation + vector stage + one-to-one matching, and its tuning grid."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import shapely
from affine import Affine
from rasterio.crs import CRS

from pipeline.training.banepa import RowScene, Separation, score_plain, score_row, tune_separation
from pipeline.training.targets import burn_instance_targets

# A geographic scene like the Banepa tiles: ~0.13 m pixels at latitude 27.6.
TRANSFORM = Affine(1.34e-6, 0, 85.52, 0, -1.19e-6, 27.63)
BOXES = [shapely.box(8, 8, 40, 40), shapely.box(40, 8, 72, 40), shapely.box(90, 10, 120, 50)]


def _scene_and_probs() -> tuple[RowScene, np.ndarray]:
    mask = np.zeros((64, 128), dtype=np.uint8)
    for b in BOXES:
        x0, y0, x1, y1 = map(int, b.bounds)
        mask[y0:y1, x0:x1] = 1
    classes = burn_instance_targets(mask, BOXES, building_id=1, boundary_id=2, contact_id=3, boundary_px=3,
                                    contact_px=4)
    probs = np.full((4, *mask.shape), 0.02, dtype=np.float32)
    for c in range(4):
        probs[c][classes == c] = 0.94
    world = [shapely.affinity.affine_transform(b, [TRANSFORM.a, 0, 0, TRANSFORM.e, TRANSFORM.c, TRANSFORM.f])
             for b in BOXES]
    truth = gpd.GeoDataFrame(geometry=world, crs="EPSG:4326")
    truth = truth.to_crs(truth.estimate_utm_crs())
    scene = RowScene(np.zeros((3, *mask.shape), dtype=np.uint8), TRANSFORM, CRS.from_epsg(4326), truth)
    return scene, probs


def test_touching_buildings_score_as_separate_matches_only_with_separation():
    scene, probs = _scene_and_probs()
    sep = Separation(seed_confidence=0.8, min_seed_m2=0.5, grow_m=1.0, min_building_area_m2=2.0)
    scores = score_row(probs, scene, sep)
    assert scores["tp"] == 3 and scores["f1"] == 1.0
    plain = score_plain(probs, scene, 2.0)
    assert plain["predicted"] == 2 and plain["tp"] == 1


def test_tuning_returns_the_best_grid_point():
    scene, probs = _scene_and_probs()
    best, trials = tune_separation(probs, scene, seeds=(0.5, 0.99), min_seeds_m2=(0.5,), min_areas_m2=(2.0, 50.0),
                                   grows_m=(1.0,))
    assert len(trials) == 4
    assert best.seed_confidence == 0.5 and best.min_building_area_m2 == 2.0
    assert max(t["f1"] for t in trials) == 1.0
