"""Metrics on hand-made geometries and masks whose scores are known exactly."""

from __future__ import annotations

import math

import geopandas as gpd
import numpy as np
import pytest
import shapely

from pipeline.errors import ConfigError
from pipeline.metrics import (
    BuildingScores,
    centerline_scores,
    confusion,
    evaluate_vectors,
    match_buildings,
    pixel_iou,
)


def square(x: float, y: float, side: float = 10.0) -> shapely.Polygon:
    return shapely.box(x, y, x + side, y + side)


def test_shifted_square_has_known_iou():
    # A 10 m square shifted 2 m: intersection 80, union 120.
    scores = match_buildings([square(2, 0)], [square(0, 0)])
    assert (scores.tp, scores.fp, scores.fn) == (1, 0, 0)
    assert scores.mean_iou_matched == pytest.approx(80 / 120)
    assert scores.precision == scores.recall == scores.f1 == 1.0


def test_pair_below_threshold_is_a_miss_and_a_false_alarm():
    scores = match_buildings([square(2, 0)], [square(0, 0)], iou_threshold=0.7)
    assert scores == BuildingScores(tp=0, fp=1, fn=1, precision=0.0, recall=0.0, f1=0.0, mean_iou_matched=0.0)


def test_two_predictions_over_one_truth_give_one_tp_and_one_fp():
    scores = match_buildings([square(2, 0), square(1, 0)], [square(0, 0)])
    assert (scores.tp, scores.fp, scores.fn) == (1, 1, 0)
    # The better prediction (shift 1: 90 / 110) is the one matched.
    assert scores.mean_iou_matched == pytest.approx(90 / 110)
    assert scores.precision == 0.5 and scores.recall == 1.0
    assert scores.f1 == pytest.approx(2 / 3)


def test_greedy_matching_takes_pairs_by_decreasing_iou():
    # Prediction 0 overlaps both truths (IoU 70/130 with truth 0, 90/110 with truth 1); prediction 1
    # fits truth 0 best. Taking pairs by IoU gives each truth its best prediction.
    truth = [square(0, 0), square(4, 0)]
    pred = [square(3, 0), square(0.5, 0)]
    scores = match_buildings(pred, truth)
    assert (scores.tp, scores.fp, scores.fn) == (2, 0, 0)
    assert scores.mean_iou_matched == pytest.approx((90 / 110 + 95 / 105) / 2)
    # With a threshold between the two IoUs of prediction 0, it can still match truth 1 only.
    assert match_buildings([square(3, 0)], truth, iou_threshold=0.6).mean_iou_matched == pytest.approx(90 / 110)


def test_empty_inputs_and_invalid_polygons():
    nothing = match_buildings([], [square(0, 0)])
    assert (nothing.tp, nothing.fn, nothing.precision, nothing.recall, nothing.f1) == (0, 1, 1.0, 0.0, 0.0)
    assert match_buildings([], []).f1 == 1.0
    bowtie = shapely.Polygon([(0, 0), (10, 10), (10, 0), (0, 10)])
    assert not bowtie.is_valid
    scores = match_buildings([bowtie, None], [square(0, 0)])
    assert scores.fp + scores.tp == 1 and scores.fn + scores.tp == 1


def test_geoseries_in_a_geographic_crs_is_refused():
    truth = gpd.GeoSeries([square(0, 0)], crs="EPSG:4326")
    with pytest.raises(ConfigError, match="geographic"):
        match_buildings(truth, truth)


def test_prediction_is_reprojected_to_the_truth_crs():
    truth = gpd.GeoSeries([square(500_000, 3_000_000, 20.0)], crs="EPSG:32645")
    pred = truth.to_crs("EPSG:32644")
    scores = match_buildings(pred, truth)
    assert scores.tp == 1 and scores.mean_iou_matched > 0.99


def test_pixel_iou_and_confusion():
    true = np.array([[0, 1, 1], [2, 2, 0]])
    pred = np.array([[1, 1, 0], [2, 0, 0]])
    assert pixel_iou(pred, true, 1) == pytest.approx(1 / 3)
    assert pixel_iou(pred, true, 2) == pytest.approx(1 / 2)
    assert math.isnan(pixel_iou(pred, true, 5))
    valid = np.array([[False, True, True], [True, True, True]])
    assert pixel_iou(pred, true, 1, valid) == pytest.approx(1 / 2)
    cm = confusion(pred, true, 3)
    assert cm.tolist() == [[1, 1, 0], [1, 1, 0], [1, 0, 1]]
    assert cm.sum() == true.size
    assert confusion(pred, true, 3, valid=valid).sum() == 5
    with pytest.raises(ConfigError, match="num_classes"):
        confusion(pred, true, 2)


def test_centerline_scores_on_known_lengths():
    true = [shapely.LineString([(0, 0), (100, 0)])]
    # Collinear half: the round-capped 2 m buffer reaches 2 m past its end, so 52 m of truth is found.
    half = [shapely.LineString([(0, 0), (50, 0)])]
    s = centerline_scores(half, true, buffer=2.0)
    assert s.completeness == pytest.approx(0.52)
    assert s.correctness == pytest.approx(1.0)
    assert s.quality == pytest.approx(50 / (50 + 48))
    # Add 30 m of line far from any road: it lowers correctness only.
    far = [*half, shapely.LineString([(0, 50), (30, 50)])]
    s = centerline_scores(far, true, buffer=2.0)
    assert s.completeness == pytest.approx(0.52)
    assert s.correctness == pytest.approx(50 / 80)
    assert s.quality == pytest.approx(50 / (80 + 48))
    # A parallel line 1 m off lies inside the buffer along its whole length.
    s = centerline_scores([shapely.LineString([(0, 1), (100, 1)])], true, buffer=2.0)
    assert (s.completeness, s.correctness, s.quality) == pytest.approx((1.0, 1.0, 1.0))
    s = centerline_scores([shapely.LineString([(0, 3), (100, 3)])], true, buffer=2.0)
    assert (s.completeness, s.correctness, s.quality) == pytest.approx((0.0, 0.0, 0.0))


def test_evaluate_vectors_reports_every_layer_present_in_both():
    crs = "EPSG:32645"
    truth = {
        "buildings": gpd.GeoDataFrame(geometry=[square(0, 0), square(30, 0)], crs=crs),
        "roads": gpd.GeoDataFrame(geometry=[shapely.box(0, 20, 100, 26)], crs=crs),
        "road_centerlines": gpd.GeoDataFrame(geometry=[shapely.LineString([(0, 23), (100, 23)])], crs=crs),
    }
    pred = {
        "buildings": gpd.GeoDataFrame(geometry=[square(1, 0)], crs=crs),
        "roads": gpd.GeoDataFrame(geometry=[shapely.box(0, 20, 50, 26)], crs=crs),
        "road_centerlines": gpd.GeoDataFrame(geometry=[shapely.LineString([(0, 23), (50, 23)])], crs=crs),
    }
    scores = evaluate_vectors(pred, truth, iou_threshold=0.5, centerline_buffer_m=2.0)
    assert scores["building_tp"] == 1 and scores["building_fn"] == 1 and scores["building_fp"] == 0
    assert scores["building_recall"] == 0.5
    assert scores["building_mean_iou"] == pytest.approx(90 / 110)
    assert scores["road_iou"] == pytest.approx(0.5)
    assert scores["centerline_completeness"] == pytest.approx(0.52)
    only_buildings = evaluate_vectors({"buildings": pred["buildings"]}, truth)
    assert set(only_buildings) == {f"building_{k}" for k in ("tp", "fp", "fn", "precision", "recall", "f1", "mean_iou")}
