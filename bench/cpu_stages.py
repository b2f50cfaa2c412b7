"""CPU seconds of each stage of `segment_scene` with the free forward: where the CPU side's time goes.

Runs the pipeline in this process on the synthetic town with its truth replayed as probabilities
(``free_forward.py``, so no network runs), pinned to ``--cores`` cores, and reads the process's CPU time
(all its threads, ``RUSAGE_SELF``) around every stage, and that of the vector chunk processes it reaped
(``RUSAGE_CHILDREN``: they are reaped when the scene's chunk pool shuts down, at the end of ``vectorize``).
Wall seconds are beside them: on a shared machine the wall clock says how busy it was, CPU seconds what the
work cost. The vector chunks' own steps are timed in a second pass over the encoded mask, in this process
(``SceneVectorizer.chunk`` step by step), as CPU seconds of each step.

    python bench/cpu_stages.py --size 8192 --cores 2
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

import common
import numpy as np
from free_forward import CODE_BITS, WIN_PROBABILITY, free_forward
from scaling import encoded_scene

from pipeline import stages
from pipeline.config import DEMO_MODEL, SegmentConfig

STAGES = ("prepare", "infer_blocks", "publish_masks", "vectorize", "publish_vectors", "catalog_scene", "finish")


def _cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


@contextmanager
def stage_clock(table: dict[str, dict[str, float]]):
    """Wrap every stage function of ``pipeline.stages`` with CPU and wall clocks for this block."""
    originals = {name: getattr(stages, name) for name in STAGES}

    def clocked(name, fn):
        def run(*args, **kwargs):
            wall, own, children = time.perf_counter(), _cpu(resource.RUSAGE_SELF), _cpu(resource.RUSAGE_CHILDREN)
            try:
                return fn(*args, **kwargs)
            finally:
                row = table[name]
                row["wall_s"] += time.perf_counter() - wall
                row["cpu_s"] += _cpu(resource.RUSAGE_SELF) - own
                row["chunk_process_cpu_s"] += _cpu(resource.RUSAGE_CHILDREN) - children
        return run

    for name, fn in originals.items():
        setattr(stages, name, clocked(name, fn))
    try:
        yield
    finally:
        for name, fn in originals.items():
            setattr(stages, name, fn)


def chunk_steps(scene: Path) -> dict[str, float]:
    """CPU seconds of each step of the vector chunks over the encoded scene's truth, run in this process."""
    import rasterio

    from pipeline.grid import GeoGrid, Region, Shape2d
    from pipeline.vectors import SceneVectorizer, assemble, centerlines, polygons

    with rasterio.open(scene) as ds:
        mask = ds.read(1) & CODE_BITS
        grid = GeoGrid(Shape2d(ds.height, ds.width), ds.transform, ds.crs.to_string())
    confidence = np.full(mask.shape, round(WIN_PROBABILITY * 255), np.uint8)
    steps: dict[str, float] = defaultdict(float)
    wrapped = [(assemble, n) for n in ("skeleton_lines", "drop_road_specks", "polygonize_chunk", "clean_buildings",
                                       "split_lines")]
    wrapped += [(centerlines, n) for n in ("skeletonize", "_clean_road", "_core_paths")]
    wrapped += [(polygons, "regularize_building")]
    originals = [(module, name, getattr(module, name)) for module, name in wrapped]

    def clocked(key, fn):
        def run(*args, **kwargs):
            started = time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                steps[key] += time.process_time() - started
        return run

    for module, name, fn in originals:
        setattr(module, name, clocked(f"{module.__name__.rsplit('.', 1)[-1]}.{name}", fn))
    try:
        vectorizer = SceneVectorizer(grid)
        started = time.process_time()
        parts = []
        for core, window in vectorizer.windows():
            rows, cols = window.slices_in(Region.of_shape(grid.shape))
            parts.append(vectorizer.chunk(core, window, mask[rows, cols], confidence[rows, cols]))
        steps["chunks (all steps)"] = time.process_time() - started
        started = time.process_time()
        vectorizer.finish(parts)
        steps["finish"] = time.process_time() - started
    finally:
        for module, name, fn in originals:
            setattr(module, name, fn)
    return {k: round(v, 2) for k, v in sorted(steps.items(), key=lambda kv: -kv[1])}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=8192)
    parser.add_argument("--cores", type=int, default=2, help="Cores to pin this process (and its children) to.")
    common.add_common_args(parser)
    args = parser.parse_args(argv)
    if args.quick:
        args.size = 1024
    available = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, set(available[: args.cores]))
    info = common.machine()
    scene = encoded_scene(args.work_dir, args.size, args.seed)
    out = args.work_dir / f"cpu-stages-{args.size}"
    table: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    started, cpu0 = time.perf_counter(), _cpu(resource.RUSAGE_SELF) + _cpu(resource.RUSAGE_CHILDREN)
    with free_forward(), stage_clock(table):
        result = stages.segment_scene(scene, out, SegmentConfig(model=DEMO_MODEL, overwrite=True))
    wall = time.perf_counter() - started
    cpu = _cpu(resource.RUSAGE_SELF) + _cpu(resource.RUSAGE_CHILDREN) - cpu0
    mpx = args.size**2 / 1e6
    output = {
        "benchmark": "cpu_stages",
        "machine": info,
        "size": args.size,
        "cores": args.cores,
        "features": result.counts,
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),
        "mpx_per_cpu_s": round(mpx / cpu, 2),
        "stages": {name: {k: round(v, 2) for k, v in row.items()} for name, row in table.items()},
        "chunk_steps_cpu_s": chunk_steps(scene),
        "quick": args.quick,
    }
    print(f"{output}", file=sys.stderr)
    key = (f"free forward, {args.size}^2 on {args.cores} core(s), in-process: {cpu:.1f} CPU-s = **{mpx / cpu:.2f} Mpx "
           f"per CPU-s** ({wall:.1f} s wall); CPU-s per stage (+ chunk processes): " + ", ".join(
               f"{n} {r['cpu_s']:.2f}" + (f" (+{r['chunk_process_cpu_s']:.2f})" if r["chunk_process_cpu_s"] else "")
               for n, r in output["stages"].items())
           + "; chunk steps CPU-s (one process, a second pass): "
           + ", ".join(f"{k} {v}" for k, v in output["chunk_steps_cpu_s"].items()))
    common.finish(args, "cpu_stages.py", output, key)


if __name__ == "__main__":
    main()
