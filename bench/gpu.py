"""The GPU benchmark: the model alone and the whole pipeline on a CUDA device, as one JSON object.

For each batch size (8, 16, 32) and with and without ``torch.compile``, the model alone runs bf16
autocast + channels_last forwards on one fixed batch (the pipeline's own predictor, so exactly what the
pipeline runs); FLOPs per forward come from ``torch.utils.flop_counter.FlopCounterMode`` and utilization is
achieved FLOP/s over the device's dense bf16 peak. Then the whole pipeline segments an 8192^2 synthetic
scene with the fastest setting, and the ratio pipeline / model alone is reported. A time budget keeps the
run inside a device lease: settings left when it runs out are listed under ``skipped``.

    bash bench/gpu.sh                 # on a CUDA machine: CUDA tests, then this benchmark
    python bench/gpu.py --dry-run     # on any machine: the same JSON from a tiny CPU run (tests use it)
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time

import common
import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from pipeline.config import SegmentConfig
from pipeline.raster.infer import InferenceSettings, get_predictor
from pipeline.stages import prepare, segment_scene

#: Dense bf16 tensor-core peaks by device name, from the vendors' datasheets (FLOP/s, no sparsity).
BF16_PEAK_FLOPS = {
    "H200": 989e12,
    "H100": 989e12,
    "A100": 312e12,
    "L40S": 362e12,
    "L4": 121e12,
    "A10": 125e12,
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=8192, help="Side of the synthetic scene in pixels.")
    parser.add_argument("--model", default=common.DEMO_MODEL, help="Checkpoint path or packaged model name.")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[8, 16, 32])
    parser.add_argument("--batches", type=int, default=20, help="Timed forwards per setting (after warm-up).")
    parser.add_argument("--budget-s", type=float, default=420.0,
                        help="Seconds for the whole run; settings not started by then are skipped.")
    parser.add_argument("--dry-run", action="store_true",
                        help="A tiny CPU run that checks the script and its JSON (never recorded).")
    common.add_common_args(parser)
    args = parser.parse_args(argv)
    if args.dry_run:
        args.size, args.batch_sizes, args.batches, args.quick = 256, [2], 2, True
    return args


def device_peak(name: str | None) -> float | None:
    """The dense bf16 peak of a device by its name, or None when it is not in the table."""
    for key, peak in BF16_PEAK_FLOPS.items():
        if name and key in name:
            return peak
    return None


def forward_flops(model: torch.nn.Module, batch: torch.Tensor) -> int:
    """FLOPs of one forward of ``batch`` (convolutions and matrix products, as the counter counts them)."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(batch)
    return int(counter.get_total_flops())


def time_model(predictor, batch: np.ndarray, batches: int) -> float:
    """Seconds per forward of ``batch`` after two warm-up forwards (compile and autotuning happen there)."""
    for _ in range(2):
        predictor.predict(batch)
    started = time.perf_counter()
    for _ in range(batches):
        predictor.predict(batch)  # returns host arrays, so each forward is finished when it returns
    return (time.perf_counter() - started) / batches


def block_size_for_batch(stride: int, batch_size: int, least_tiles: int = 4) -> int:
    """The smallest block side (a whole number of tile strides, at least ``least_tiles``) whose square of
    tiles is a whole number of batches."""
    tiles = least_tiles
    while (tiles * tiles) % batch_size:
        tiles += 1
    return tiles * stride


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    started = time.perf_counter()
    info = common.machine()
    cuda = torch.cuda.is_available() and not args.dry_run
    device = "cuda" if cuda else "cpu"
    skipped: list[str] = []
    if not cuda:
        skipped.append("no CUDA device (dry run or CPU machine): CPU numbers, no utilization, no compile")
    peak = device_peak(info["gpu"]) if cuda else None
    if cuda and peak is None:
        skipped.append(f"utilization: no bf16 peak known for {info['gpu']}")

    if args.dry_run:
        path = common.untrained_checkpoint(args.work_dir, base_channels=4, depth=2, tile_size=64, context_margin=8)
        model = common.BenchModel(path, "untrained unet c4 d2 tile 64 (dry run)", untrained=True)
    else:
        model = common.bench_model(args.model, args.work_dir)
    scene = common.synthetic_scene(args.work_dir, args.size, args.seed)
    base = SegmentConfig(model=str(model.path), device=device, precision="bf16", overwrite=True)
    probe = prepare(scene.path, args.work_dir / "gpu-probe", base)
    plan, bands = probe.plan, len(probe.block_job.bands)

    settings_runs = []
    for compile_ in ([False, True] if cuda else [False]):
        for batch_size in args.batch_sizes:
            name = f"batch {batch_size}{' compiled' if compile_ else ''}"
            if time.perf_counter() - started > args.budget_s:
                skipped.append(f"model alone, {name}: out of time budget")
                continue
            settings = InferenceSettings(device=device, precision="bf16", batch_size=batch_size, compile=compile_)
            predictor = get_predictor(probe.checkpoint, settings)
            batch = np.random.default_rng(0).standard_normal(
                (batch_size, bands, plan.tile_size, plan.tile_size), dtype=np.float32
            )
            seconds = time_model(predictor, batch, args.batches)
            x = torch.from_numpy(batch).to(predictor.device).to(memory_format=torch.channels_last)
            with torch.autocast(predictor.device.type, dtype=torch.bfloat16):
                # The eager module under a compiled one: the counter traces Python-level ops.
                flops = forward_flops(getattr(predictor.model, "_orig_mod", predictor.model), x)
            achieved = flops / seconds
            settings_runs.append({
                "batch_size": batch_size, "compile": compile_, "seconds_per_forward": round(seconds, 5),
                "tile_mpx_per_s": round(batch_size * plan.tile_size**2 / seconds / 1e6, 3),
                "gflop_per_forward": round(flops / 1e9, 2), "achieved_tflop_per_s": round(achieved / 1e12, 3),
                "utilization_of_bf16_peak": round(achieved / peak, 4) if peak else None,
            })
            print(f"model alone {name}: {seconds:.4f} s/forward", file=sys.stderr)

    best = max(settings_runs, key=lambda r: r["tile_mpx_per_s"])
    pipeline = None
    if time.perf_counter() - started > args.budget_s:
        skipped.append("pipeline: out of time budget")
    else:
        out_dir = args.work_dir / f"gpu-{args.size}"
        shutil.rmtree(out_dir, ignore_errors=True)  # a leftover journal would resume instead of measuring
        # Blocks of whole batches: at the default 4 x 4 tiles a block, batch 32 would pad every forward
        # with 16 empty tiles (a batch never spans blocks).
        block = block_size_for_batch(plan.stride, best["batch_size"])
        config = base.model_copy(update={"batch_size": best["batch_size"], "compile": best["compile"],
                                         "block_size": block})
        t = time.perf_counter()
        result = segment_scene(scene.path, out_dir, config)
        pipeline_s = time.perf_counter() - t
        pipeline_mpx = plan.scene.size / pipeline_s / 1e6
        # The model alone over the scene: its tiles at the best setting's rate.
        model_scene_mpx = plan.scene.size / (plan.n_tiles.size * plan.tile_size**2 / best["tile_mpx_per_s"] / 1e6) / 1e6
        pipeline = {
            "batch_size": best["batch_size"], "compile": best["compile"], "block_size": block,
            "seconds": round(pipeline_s, 3),
            "scene_mpx_per_s": round(pipeline_mpx, 3), "stage_seconds": {k: round(v, 3) for k, v in result.seconds.items()},
            "model_alone_scene_mpx_per_s": round(model_scene_mpx, 3),
            "ratio_pipeline_over_model": round(pipeline_mpx / model_scene_mpx, 4),
        }
    output = {
        "benchmark": "gpu",
        "machine": info,
        "device": device,
        "bf16_peak_tflop_per_s": peak / 1e12 if peak else None,
        "model": {"path": str(model.path), "description": model.description},
        "scene": {"rows": plan.scene.rows, "cols": plan.scene.cols, "tile": plan.tile_size, "overlap": plan.overlap},
        "model_alone": settings_runs,
        "best": best,
        "pipeline": pipeline,
        "targets": {"utilization_of_bf16_peak": 0.4, "ratio_pipeline_over_model": 0.9},
        "skipped": skipped,
        "seconds": round(time.perf_counter() - started, 1),
        "dry_run": args.dry_run,
        "quick": args.quick,
    }
    util = best["utilization_of_bf16_peak"]
    key = (f"{args.size}^2 on {device}, best {best['batch_size']}{' compiled' if best['compile'] else ''}: "
           f"{best['tile_mpx_per_s']} Mpx/s of tiles, {best['achieved_tflop_per_s']} TFLOP/s"
           f"{f' = {util:.1%} of bf16 peak' if util else ''}; pipeline "
           f"{pipeline['scene_mpx_per_s'] if pipeline else 'skipped'} Mpx/s, "
           f"**ratio {pipeline['ratio_pipeline_over_model'] if pipeline else 'n/a'}**; skipped: {skipped or 'none'}")
    common.finish(args, "gpu.py", output, key)


if __name__ == "__main__":
    main()
