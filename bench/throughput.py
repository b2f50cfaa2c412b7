"""End-to-end throughput against the model alone, on one synthetic scene, within one run.

(a) The model alone: the pipeline's own predictor (same checkpoint, tile, batch, precision, device) on
    random normalized tiles already in memory, for as many forward batches as the pipeline runs on the
    scene, half of them timed before (b) and half after. Its rate is given in tile pixels per second
    and in scene-equivalent pixels per second (scene pixels divided by the time the model alone needs
    for that scene's batches). On the CPU it is timed in two layouts: as the pipeline runs it (one
    forward per block in flight side by side, cores shared among them) and as one forward at a time on
    every core; the ratio is taken against the faster, so a thread layout can't flatter the pipeline.
(b) The whole pipeline: ``segment_scene`` from the GeoTIFF to the mask COG and the GeoPackage.

The ratio (b) / (a) in scene pixels per second says how much of the model's speed survives reading,
padding, tiling, blending, writing and vectorizing; the targets are >= 0.85 on CPU and >= 0.9 on GPU.

    python bench/throughput.py                       # 8192 x 8192, packaged synthetic-demo model
    python bench/throughput.py --size 4096 --batch-size 8
    python bench/throughput.py --quick               # smoke run, not recorded
"""

from __future__ import annotations

import argparse
import math
import shutil
import sys
import threading
import time

import common
import numpy as np

from pipeline.config import DEFAULTS, SegmentConfig
from pipeline.raster.infer import cpu_threads_per_forward, get_predictor, usable_cores
from pipeline.stages import prepare, segment_scene

QUICK_SIZE = 1024


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=8192, help="Side of the synthetic scene in pixels.")
    parser.add_argument("--model", default=common.DEMO_MODEL,
                        help="Checkpoint path or packaged name (default: synthetic-demo; an untrained "
                             "U-Net of the same shape stands in while it is not packaged).")
    parser.add_argument("--device", default=DEFAULTS["device"], help="auto, cpu, cuda or cuda:N.")
    parser.add_argument("--batch-size", type=int, default=DEFAULTS["batch_size"],
                        help="Tiles per forward pass [default: the pipeline's for the device].")
    parser.add_argument("--tile", type=int, default=None, help="Tile side [default: the checkpoint's].")
    parser.add_argument("--overlap", type=int, default=None, help="Tile overlap [default: the checkpoint's].")
    parser.add_argument("--block-size", type=int, default=DEFAULTS["block_size"], help="Block side in pixels.")
    parser.add_argument("--max-in-flight", type=int, default=DEFAULTS["max_in_flight"], help="Blocks in flight at once.")
    parser.add_argument("--precision", default=DEFAULTS["precision"], choices=["auto", "fp32", "bf16", "fp16"])
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the model (both sides of the ratio; the warm-up forward before "
                             "any timing compiles it, and the pipeline finds it compiled).")
    parser.add_argument("--torch-threads", type=int, default=None,
                        help="CPU threads for torch [default: all].")
    parser.add_argument("--model-batches", type=int, default=None,
                        help="Forward batches timed for the model alone; the scene's time is scaled "
                             "from them [default: as many as the pipeline runs].")
    common.add_common_args(parser)
    args = parser.parse_args(argv)
    if args.quick:
        args.size = min(args.size, QUICK_SIZE)
    return args


def forward_batches(plan, batch_size: int) -> int:
    """Forward passes the pipeline makes: each block's tiles go in batches, the last one padded."""
    return sum(math.ceil(len(block.tiles) / batch_size) for block in plan.blocks())


def time_batches(predictor, batch: np.ndarray, batches: int, streams: int = 1, threads: int | None = None) -> float:
    """Seconds for ``batches`` forward passes of one in-memory batch, spread over ``streams`` threads.

    ``threads`` sets torch's threads per forward first (None leaves them as they are).
    """
    import torch

    if threads:
        torch.set_num_threads(threads)
    shares = [batches // streams + (i < batches % streams) for i in range(streams)]

    def run(n: int) -> None:
        for _ in range(n):
            predictor.predict(batch)

    workers = [threading.Thread(target=run, args=(n,)) for n in shares if n]
    started = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return time.perf_counter() - started


def model_layouts(predictor, settings, in_flight: int) -> dict[str, tuple[int, int | None]]:
    """The thread layouts the model alone is timed in: name -> (concurrent forwards, threads each)."""

    if predictor.device.type != "cpu":
        return {"pipeline": (1, None)}  # one forward at a time per GPU, as the pipeline runs it
    layouts = {"pipeline": (in_flight, cpu_threads_per_forward(settings, in_flight))}
    if in_flight > 1:
        layouts["one_forward_all_cores"] = (1, settings.torch_threads or usable_cores())
    return layouts


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    info = common.machine()

    model = common.bench_model(args.model, args.work_dir)
    scene = common.synthetic_scene(args.work_dir, args.size, args.seed)
    out_dir = args.work_dir / f"throughput-{args.size}"
    # A leftover working directory would let the run resume finished blocks instead of measuring them.
    shutil.rmtree(out_dir, ignore_errors=True)
    config = SegmentConfig(
        model=str(model.path), tile_size=args.tile, overlap=args.overlap, block_size=args.block_size,
        batch_size=args.batch_size, device=args.device, precision=args.precision,
        max_in_flight=args.max_in_flight, torch_threads=args.torch_threads, compile=args.compile, overwrite=True,
    )
    # The pipeline's own plan and inference settings, so the model alone runs exactly what it runs.
    job = prepare(scene.path, out_dir, config)
    plan, settings = job.plan, job.block_job.inference
    predictor = get_predictor(job.checkpoint, settings)
    batch_size = predictor.batch_size  # the setting, or the device's default
    batches = forward_batches(plan, batch_size)
    measured = min(args.model_batches or batches, batches)

    shape = (batch_size, len(job.block_job.bands), plan.tile_size, plan.tile_size)
    batch = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
    predictor.predict(batch)  # warm-up, as the pipeline's first block finds the cached predictor warm
    layouts = model_layouts(predictor, settings, config.max_in_flight)
    # Half of the model-alone batches before the pipeline and half after, so that a change in the
    # machine's load during the run weighs on both sides of the ratio alike.
    before = max(1, measured // 2)
    after = measured - before
    print(f"model alone: {before} + {after} batches of {batch_size} tiles of {plan.tile_size}^2 "
          f"on {predictor.device}, layouts {layouts}", file=sys.stderr)
    before_s = {name: time_batches(predictor, batch, before, *layout) for name, layout in layouts.items()}

    print(f"pipeline: {plan.n_blocks.size} blocks, {plan.n_tiles.size} tiles", file=sys.stderr)
    started = time.perf_counter()
    result = segment_scene(scene.path, out_dir, config)
    pipeline_s = time.perf_counter() - started

    after_s = {name: time_batches(predictor, batch, after, *layout) for name, layout in layouts.items()}
    layout_s = {name: before_s[name] + after_s[name] for name in layouts}
    best = min(layout_s, key=layout_s.get)
    model_measured_s = layout_s[best]
    model_scene_s = model_measured_s * batches / measured

    scene_px = plan.scene.size
    tile_px = plan.tile_size**2
    model_tile_mpx = measured * batch_size * tile_px / model_measured_s / 1e6
    model_scene_mpx = scene_px / model_scene_s / 1e6
    pipeline_mpx = scene_px / pipeline_s / 1e6
    ratio = pipeline_mpx / model_scene_mpx
    infer_s = result.seconds.get("infer", float("nan"))
    output = {
        "benchmark": "throughput",
        "machine": info,
        "model": {"path": str(model.path), "description": model.description, "untrained": model.untrained},
        "scene": {"path": str(scene.path), "rows": plan.scene.rows, "cols": plan.scene.cols,
                  "seed": args.seed},
        "settings": {
            "tile": plan.tile_size, "overlap": plan.overlap, "block_size": plan.block_size,
            "batch_size": batch_size, "device": str(predictor.device),
            "precision": settings.precision, "autocast": str(predictor.autocast_dtype),
            "max_in_flight": config.max_in_flight, "compile": config.compile,
        },
        "plan": {
            "blocks": plan.n_blocks.size, "tiles": plan.n_tiles.size, "forward_batches": batches,
            "tile_overhead": round(plan.tile_overhead, 4),
        },
        "model_alone": {
            "batches_timed": measured,
            "layouts": {
                name: {
                    "concurrent_forwards": layouts[name][0], "threads_per_forward": layouts[name][1],
                    "seconds_per_batch_before_pipeline": round(before_s[name] / before, 4),
                    "seconds_per_batch_after_pipeline": round(after_s[name] / after, 4) if after else None,
                }
                for name in layouts
            },
            "reference_layout": best,
            "seconds_timed": round(model_measured_s, 3),
            "seconds_for_scene": round(model_scene_s, 3),
            "tile_mpx_per_s": round(model_tile_mpx, 4),
            "scene_equivalent_mpx_per_s": round(model_scene_mpx, 4),
        },
        "pipeline": {
            "seconds": round(pipeline_s, 3),
            "scene_mpx_per_s": round(pipeline_mpx, 4),
            "stage_seconds": {k: round(v, 3) for k, v in result.seconds.items()},
            "counts": result.counts,
        },
        "ratio_pipeline_over_model": round(ratio, 4),
        "ratio_infer_stage_over_model": round(model_scene_s / infer_s, 4),
        "targets": {"ratio_cpu": 0.85, "ratio_gpu": 0.9, "tile_overhead": 1.3},
        "quick": args.quick,
    }
    stages = ", ".join(f"{k} {v:.1f}" for k, v in result.seconds.items())
    per_batch = ", ".join(f"{name} {layout_s[name] / measured:.3f}" for name in layouts)
    key = (f"{args.size}^2, tile {plan.tile_size}/overlap {plan.overlap}, batch {batch_size}, "
           f"{predictor.device}, {config.max_in_flight} in flight{', compiled' if config.compile else ''}; "
           f"{model.description}. Model alone s/batch: "
           f"{per_batch} (reference {best}): {model_tile_mpx:.3f} Mpx/s of tiles = "
           f"{model_scene_mpx:.3f} scene-Mpx/s; pipeline {pipeline_mpx:.3f} Mpx/s ({pipeline_s:.1f} s); "
           f"**ratio {ratio:.3f}**; infer stage / model alone {model_scene_s / infer_s:.3f}; "
           f"tile overhead {plan.tile_overhead:.3f}; stages s: {stages}")
    common.finish(args, "throughput.py", output, key)


if __name__ == "__main__":
    main()
