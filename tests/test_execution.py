"""Block execution: a Dask cluster of worker processes and any in-flight bound give the in-process result."""

from __future__ import annotations

import numpy as np
import pytest
from distributed import LocalCluster

from pipeline.config import SegmentConfig
from pipeline.run import segment_scene
from tests.conftest import read_features, read_mask


def _run(scene, out, checkpoint, **options):
    result = segment_scene(scene, out, SegmentConfig(model=str(checkpoint), block_size=96, **options))
    return read_mask(result.mask_path), result


@pytest.mark.slow
def test_local_cluster_with_two_worker_processes_matches_in_process(smooth_scene, tmp_path, tiny_checkpoint):
    local_mask, local = _run(smooth_scene, tmp_path / "local", tiny_checkpoint)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        cluster_mask, remote = _run(smooth_scene, tmp_path / "cluster", tiny_checkpoint, dask_address=cluster.scheduler_address)
    np.testing.assert_array_equal(cluster_mask, local_mask)
    for layer in ("buildings", "roads", "road_centerlines"):
        assert read_features(remote.gpkg_path, layer) == read_features(local.gpkg_path, layer)


def test_one_and_three_blocks_in_flight_give_the_same_outputs(smooth_scene, tmp_path, tiny_checkpoint):
    one_mask, one = _run(smooth_scene, tmp_path / "one", tiny_checkpoint, max_in_flight=1)
    three_mask, three = _run(smooth_scene, tmp_path / "three", tiny_checkpoint, max_in_flight=3)
    assert one.blocks > 3
    np.testing.assert_array_equal(one_mask, three_mask)
    for layer in ("buildings", "roads"):
        assert read_features(one.gpkg_path, layer) == read_features(three.gpkg_path, layer)
