"""Block execution: a Dask cluster of worker processes and any in-flight bound give the in-process result."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from distributed import LocalCluster

from models.device import NATIVE_BF16_FLAGS, cpu_flags
from pipeline import stages
from pipeline.config import SegmentConfig
from pipeline.stages import segment_scene
from pipeline.vectors import vectorize_scene
from tests.helpers import read_features, read_mask, smooth_image, write_geotiff

NATIVE_BF16 = bool(NATIVE_BF16_FLAGS & cpu_flags())


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


def test_vectorizing_while_inferring_gives_the_layers_of_the_finished_mask(tmp_path, tiny_checkpoint):
    scene = write_geotiff(tmp_path / "scene.tif", smooth_image(300, 360, seed=5))
    config = SegmentConfig(model=str(tiny_checkpoint), block_size=64, vector_chunk_size=64, max_in_flight=2)
    job = stages.prepare(scene, tmp_path / "out", config)
    with stages.vector_stream(job) as stream:
        store = stages.infer_blocks(job, stream).store
        layers = stages.vectorize(job, stream)
    assert len(stream.chunks) == 30 and len(layers.buildings) > 10
    # Most chunks are polygonized before the last block is in; only the last row of chunks waits.
    assert 0 < stream.started_before_last_region < len(stream.chunks)
    reference = stages.scene_vectorizer(job)
    after = vectorize_scene(store.read, job.scene.grid, classes=reference.classes, settings=reference.settings)
    for name, layer in layers.items():
        frame = layer.to_frame() if name == "buildings" else layer  # the buildings are staged on disk
        expected = getattr(after, name)
        assert len(frame) == len(expected), name
        assert list(frame.geometry.to_wkb()) == list(expected.geometry.to_wkb()), name
        np.testing.assert_allclose(frame["score"], expected["score"])


def test_cpu_forwards_share_the_cores(monkeypatch):
    from pipeline.raster.infer import InferenceSettings, cpu_threads_per_forward, usable_cores

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    cores = usable_cores()
    assert cpu_threads_per_forward(InferenceSettings(), concurrent=1) == cores
    assert cpu_threads_per_forward(InferenceSettings(), concurrent=2) == max(1, cores // 2)
    assert cpu_threads_per_forward(InferenceSettings(), concurrent=4 * cores) == 1
    assert cpu_threads_per_forward(InferenceSettings(torch_threads=3), concurrent=2) == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert cpu_threads_per_forward(InferenceSettings(), concurrent=1) is None  # the environment decides


def test_concurrent_cpu_forwards_give_the_sequential_results(tiny_checkpoint):
    from concurrent.futures import ThreadPoolExecutor

    from pipeline.raster.infer import InferenceSettings, get_predictor

    predictor = get_predictor(tiny_checkpoint, InferenceSettings(device="cpu", batch_size=2))
    batches = [np.random.default_rng(i).standard_normal((3, 3, 64, 64), dtype=np.float32) for i in range(6)]
    sequential = [predictor.predict(b) for b in batches]
    with ThreadPoolExecutor(3) as pool:
        concurrent = list(pool.map(predictor.predict, batches))
    for a, b in zip(sequential, concurrent, strict=True):
        np.testing.assert_array_equal(a, b)


def test_batch_size_defaults_by_device_and_the_run_records_it(tiny_checkpoint, smooth_scene, tmp_path):
    import json

    import torch

    from pipeline.raster.infer import (
        CPU_BATCH_SIZE,
        GPU_BATCH_SIZE,
        InferenceSettings,
        default_batch_size,
        get_predictor,
    )

    assert default_batch_size(torch.device("cpu")) == CPU_BATCH_SIZE == 1
    assert default_batch_size(torch.device("cuda", 0)) == GPU_BATCH_SIZE == 4
    default = get_predictor(tiny_checkpoint, InferenceSettings(device="cpu"))
    assert default.batch_size == 1
    assert get_predictor(tiny_checkpoint, InferenceSettings(device="cpu", batch_size=3)).batch_size == 3
    tiles = np.random.default_rng(5).standard_normal((5, 3, 64, 64), dtype=np.float32)
    batches = list(default.predict_batches(tiles))
    assert [b.shape[0] for b in batches] == [1] * 5  # one tile a forward: nothing padded
    by_three = get_predictor(tiny_checkpoint, InferenceSettings(device="cpu", batch_size=3)).predict(tiles)
    # Close, not always bitwise (oneDNN may pick another algorithm per batch shape): hence one shape a run.
    np.testing.assert_allclose(np.concatenate(batches), by_three, atol=1e-4)
    result = segment_scene(smooth_scene, tmp_path / "out", SegmentConfig(model=str(tiny_checkpoint), device="cpu"))
    record = json.loads(next(result.mask_path.parent.glob("*_run.json")).read_text())
    assert record["batch_size"] == 1 and record["config"]["batch_size"] is None
    assert result.forward_batch_sizes == [1] == record["result"]["forward_batch_sizes"]  # as the workers ran it
    three = segment_scene(smooth_scene, tmp_path / "three", SegmentConfig(model=str(tiny_checkpoint), batch_size=3))
    assert three.forward_batch_sizes == [3]


def _threads_after_loading(checkpoint) -> int:
    import torch

    from pipeline.raster.infer import InferenceSettings, get_predictor

    get_predictor(checkpoint, InferenceSettings(device="cpu"))
    return torch.get_num_threads()


@pytest.mark.parametrize("in_flight", [1, 2])
def test_each_in_process_worker_thread_gets_its_share_of_the_cores(tiny_checkpoint, monkeypatch, in_flight):
    from pipeline.raster.execute import dask_client
    from pipeline.raster.infer import usable_cores

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    with dask_client(None, in_flight) as client:
        seen = client.submit(_threads_after_loading, tiny_checkpoint, pure=False).result()
    assert seen == max(1, usable_cores() // in_flight)


def test_a_scene_of_one_block_runs_its_forwards_on_every_core(tiny_checkpoint, tmp_path, monkeypatch):
    """With fewer blocks than --max-in-flight there are fewer worker threads, so no core is left idle."""
    from pipeline.raster.infer import usable_cores

    cores = usable_cores()
    if cores < 2:
        pytest.skip("needs two cores to tell a whole-CPU forward from a half-CPU one")
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    scene = write_geotiff(tmp_path / "scene.tif", smooth_image(150, 170))
    config = SegmentConfig(model=str(tiny_checkpoint), max_in_flight=2)
    one = segment_scene(scene, tmp_path / "one", config)
    many = segment_scene(scene, tmp_path / "many", config.model_copy(update={"block_size": 64}))
    assert (one.blocks, one.forward_threads) == (1, [cores])
    assert many.blocks > 2 and many.forward_threads == [cores // 2]  # two blocks at once share the cores
    run = json.loads(next((tmp_path / "one").glob("*_run.json")).read_text())
    assert run["result"]["forward_threads"] == [cores]


def _tta_reference(checkpoint, tiles: np.ndarray, dtype) -> np.ndarray:
    """The mean of the eight flipped/rotated forwards, computed by hand under ``dtype`` autocast (None: fp32)."""
    import contextlib

    import torch

    from models.checkpoint import load_checkpoint

    model = load_checkpoint(checkpoint).model.eval()
    views = []
    cast = torch.autocast("cpu", dtype=dtype) if dtype is not None else contextlib.nullcontext()
    with torch.inference_mode(), cast:
        x = torch.from_numpy(tiles)
        for k in range(4):
            for flip in (False, True):
                v = torch.rot90(x, k, dims=(2, 3))
                v = torch.flip(v, dims=(3,)) if flip else v
                p = torch.softmax(model(v).float(), dim=1)
                p = torch.flip(p, dims=(3,)) if flip else p
                views.append(torch.rot90(p, -k, dims=(2, 3)).numpy())
    return np.mean(views, axis=0)


def test_tta_is_the_mean_of_the_eight_symmetric_forwards(tiny_checkpoint):
    from pipeline.raster.infer import InferenceSettings, get_predictor

    tiles = np.random.default_rng(3).standard_normal((3, 3, 64, 64)).astype(np.float32)
    # fp32 pinned: `auto` is bf16 on a CPU with native bf16, and the reference is computed in fp32.
    settings = InferenceSettings(device="cpu", precision="fp32", batch_size=2, tta=True)
    got = get_predictor(tiny_checkpoint, settings).predict(tiles)
    np.testing.assert_allclose(got, _tta_reference(tiny_checkpoint, tiles, None), atol=1e-5)
    plain = get_predictor(tiny_checkpoint, dataclasses.replace(settings, tta=False)).predict(tiles)
    assert np.abs(got - plain).max() > 1e-3  # the augmentation changes the result


@pytest.mark.skipif(not NATIVE_BF16, reason="the CPU has no native bf16 (amx_bf16 or avx512_bf16): auto runs fp32")
def test_tta_in_auto_precision_on_a_native_bf16_cpu_runs_bf16_within_its_rounding(tiny_checkpoint):
    from pipeline.raster.infer import InferenceSettings, get_predictor

    tiles = np.random.default_rng(3).standard_normal((3, 3, 64, 64)).astype(np.float32)
    auto = InferenceSettings(device="cpu", batch_size=2, tta=True)
    got = get_predictor(tiny_checkpoint, auto).predict(tiles)
    reference = _tta_reference(tiny_checkpoint, tiles, None)
    # bf16 keeps 8 bits of mantissa: probabilities agree to a few hundredths, the classes almost everywhere.
    np.testing.assert_allclose(got, reference, atol=0.1)
    assert (got.argmax(1) == reference.argmax(1)).mean() > 0.99
    plain = get_predictor(tiny_checkpoint, dataclasses.replace(auto, tta=False)).predict(tiles)
    assert np.abs(got - plain).max() > 0.1  # the augmentation changes more than bf16 rounding does
    fp32_gap = np.abs(got - reference).max()
    assert fp32_gap > 1e-4, "auto precision did not run in bf16 on a CPU with native bf16"


def test_tta_masks_do_not_depend_on_the_block_size(smooth_scene, tmp_path, tiny_checkpoint):
    small, _ = _run(smooth_scene, tmp_path / "small", tiny_checkpoint, tta=True)
    big_result = segment_scene(smooth_scene, tmp_path / "big",
                               SegmentConfig(model=str(tiny_checkpoint), block_size=4096, tta=True))
    np.testing.assert_array_equal(small, read_mask(big_result.mask_path))


def test_blocks_reusing_a_workers_arrays_blend_what_fresh_arrays_blend(tmp_path, tiny_checkpoint):
    """process_block hands each block views of one thread-local buffer (of the largest extent seen, full of
    the last block's sums): the blocks of a scene, edge blocks included, equal a fresh accumulator's."""
    from pipeline.raster.blend import BlockAccumulator, fixed_window
    from pipeline.raster.blocks import _accumulator_arrays, process_block, tile_views
    from pipeline.raster.infer import get_predictor
    from pipeline.raster.read import SceneReader

    scene = write_geotiff(tmp_path / "s.tif", smooth_image(150, 170))
    job = stages.prepare(scene, tmp_path / "out", SegmentConfig(model=str(tiny_checkpoint), block_size=64))
    plan, bj = job.plan, job.block_job
    predictor = get_predictor(job.checkpoint, bj.inference)
    reader = SceneReader(scene, list(bj.bands), list(bj.mean), list(bj.std), bj.has_mask)
    for index in [b.index for b in plan.blocks()][::-1]:  # the smaller edge blocks first, then the large
        block = plan.block(*index)
        got = process_block(bj, index)
        fresh = BlockAccumulator(block.extent, bj.num_classes)
        probs = predictor.predict(tile_views(reader.read(block.extent), block))
        for tile, p in zip(block.tiles, probs, strict=True):
            fresh.add(tile, p, fixed_window(plan.tile_size, plan.overlap))
        sums, weights = _accumulator_arrays(bj.num_classes, block.extent.rows, block.extent.cols)
        np.testing.assert_array_equal(sums, fresh.sums)
        np.testing.assert_array_equal(weights, fresh.weights)
        assert got.finals or got.partials
    with pytest.raises(ValueError, match="do not fit the extent"):
        BlockAccumulator(block.extent, bj.num_classes, sums[:, :-1], weights[:-1])


def _listening() -> set[tuple[str, int]]:
    """This process's listening TCP sockets as (address, port)."""
    import psutil

    process = psutil.Process()
    connections = process.net_connections(kind="inet") if hasattr(process, "net_connections") else \
        process.connections(kind="inet")
    return {(c.laddr.ip, c.laddr.port) for c in connections if c.status == psutil.CONN_LISTEN}


def _sockets_of_a_run(scene, out, checkpoint) -> set[tuple[str, int]]:
    """The listening sockets a local run opens, listed after each of its blocks (its cluster is up then)."""
    before, seen = _listening(), set()
    segment_scene(scene, out, SegmentConfig(model=str(checkpoint), block_size=96),
                  progress=lambda done, total: seen.update(_listening()))
    return seen - before


def test_a_local_run_listens_on_loopback_only(smooth_scene, tmp_path, tiny_checkpoint, monkeypatch):
    import ipaddress

    monkeypatch.delenv("SCENESEG_DASK_DASHBOARD", raising=False)
    opened = _sockets_of_a_run(smooth_scene, tmp_path / "out", tiny_checkpoint)
    assert opened, "the in-process scheduler serves HTTP while the blocks run"
    assert all(ipaddress.ip_address(host).is_loopback for host, _ in opened), opened


def test_the_dashboard_is_served_on_loopback_when_asked(smooth_scene, tmp_path, tiny_checkpoint, monkeypatch):
    import socket

    from pipeline.errors import ConfigError
    from pipeline.raster.execute import dask_client

    with socket.socket() as probe:  # a port free right now
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("SCENESEG_DASK_DASHBOARD", str(port))  # a bare port: loopback
    assert ("127.0.0.1", port) in _sockets_of_a_run(smooth_scene, tmp_path / "out", tiny_checkpoint)
    monkeypatch.setenv("SCENESEG_DASK_DASHBOARD", "localhost:dash")
    with pytest.raises(ConfigError, match="SCENESEG_DASK_DASHBOARD='localhost:dash'.*127.0.0.1:8787"):
        with dask_client(None, 1):
            pass


def test_the_run_record_states_the_precision_the_workers_ran(smooth_scene, tmp_path, tiny_checkpoint):
    """A remote GPU worker runs bf16 while the client that writes the record is a CPU: the record says what
    the blocks ran in, as the workers report it, not what this machine would choose."""
    config = SegmentConfig(model=str(tiny_checkpoint), precision="fp32", block_size=96)
    job = stages.prepare(smooth_scene, tmp_path / "out", config)
    with stages.vector_stream(job) as stream:
        inferred = stages.infer_blocks(job, stream)
        assert inferred.report.precisions == (("fp32", "fp32 asked for"),)
        masks = stages.publish_masks(job, inferred.store)
        layers = stages.vectorize(job, stream)
    counts = stages.publish_vectors(job, layers)
    remote = dataclasses.replace(inferred, report=dataclasses.replace(
        inferred.report, precisions=(("bfloat16", "auto: bf16 autocast on CUDA"),)))
    stages.finish(job, remote, stream, masks, counts, {})
    record = json.loads(job.run_path.read_text())
    assert record["precision"] == {"autocast": "bfloat16", "why": "auto: bf16 autocast on CUDA"}
