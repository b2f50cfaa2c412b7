"""Peak memory of the `sceneseg segment` command as the scene grows: bounded by blocks, not by the scene.

Each size is a synthetic RGB scene (rendered and written block by block, cached in the work directory).
The command runs in a child process; its process tree is polled every 50 ms for the summed resident
memory, and the child's own ``ru_maxrss`` is read when it is reaped (``os.wait4``). Two kinds of peak
are reported:

* RSS, what ``ps`` shows. It includes file-backed pages of memory-mapped files (the working mask and
  confidence arrays), which the kernel may drop at any time and which grow with the scene.
* anonymous RSS (``RssAnon``): heap, arrays and buffers, which cannot be dropped.

Content: the default model paints almost nothing, which measures the raster path. With
``--model synthetic-demo`` the trained demo model finds the synthetic town's buildings and roads (tens of
thousands of polygons at 8192^2; each run records its feature counts), which measures the vector stage too:
its finished buildings are staged on disk (``pipeline.vectors.spool``), so the peak should not grow with them.

The target is peak(32768^2) / peak(4096^2) <= 1.25 (raster path) and peak(8192^2) / peak(2048^2) <= 1.15
with content. A 32768^2 run takes long on a small CPU: choose the
sizes with ``--sizes``; the JSON and the recorded row name the sizes that actually ran.

The working set rises and falls with every block (two forward passes at their high point at once, a
vector chunk, a seam), so a peak is the worst coincidence a run happened to meet: a 4-block run meets
few, a 256-block run many. The smallest size is therefore run ``--repeat-smallest`` times (default 3)
and its highest peak is the baseline of the ratios (measured: three 4096^2 runs peaked at 1020 to
1239 MiB anonymous).

    python bench/memory.py --sizes 4096 16384
    python bench/memory.py --model synthetic-demo --sizes 2048 8192    # with real content
    python bench/memory.py --quick            # 512 and 1024, not recorded
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import common

from pipeline.config import DEFAULTS

QUICK_SIZES = [512, 1024]
_MIB = 1024 * 1024
FAST_MODEL = "fast"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[4096, 16384, 32768],
                        help="Scene sides in pixels, smallest first.")
    parser.add_argument("--model", default=FAST_MODEL,
                        help="Checkpoint path or packaged name; 'fast' (default) is an untrained U-Net with "
                             "base_channels=8, depth=3, tile 512, margin 24: memory of the same block plan, "
                             "in a fraction of the time.")
    parser.add_argument("--device", default=DEFAULTS["device"], help="auto, cpu, cuda or cuda:N.")
    parser.add_argument("--batch-size", type=int, default=DEFAULTS["batch_size"],
                        help="Tiles per forward pass [default: the pipeline's for the device].")
    parser.add_argument("--block-size", type=int, default=DEFAULTS["block_size"], help="Block side in pixels.")
    parser.add_argument("--max-in-flight", type=int, default=DEFAULTS["max_in_flight"], help="Blocks in flight at once.")
    parser.add_argument("--interval", type=float, default=0.05, help="Seconds between memory samples.")
    parser.add_argument("--repeat-smallest", type=int, default=3,
                        help="Runs of the smallest size; its highest peak is the baseline of the ratios.")
    common.add_common_args(parser)
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes = QUICK_SIZES
    args.sizes = sorted(set(args.sizes))
    return args


def resolve_model(spec: str, work_dir: Path) -> tuple[Path, str]:
    """The checkpoint to run and a sentence saying what it is."""
    if spec == FAST_MODEL:
        # The background bias keeps this initialisation's mask from being speckle, which would turn the
        # run into a benchmark of polygonizing noise (see common.untrained_checkpoint).
        path = common.untrained_checkpoint(work_dir, base_channels=8, depth=3, background_bias=4.0)
        return path.resolve(), ("untrained unet base_channels=8 depth=3, tile 512 margin 24, "
                                "background-biased (mask almost all background: the vector stage has next "
                                "to nothing to do)")
    model = common.bench_model(spec, work_dir)
    return model.path, model.description


def disk_needed(size: int) -> int:
    """Bytes a size needs on disk at most: scene (uncompressed bound), working arrays, mask, and 1 GiB."""
    return size * size * (3 + 2 + 1) + 1024 * _MIB


def segment_command(scene: Path, out: Path, model: Path, args: argparse.Namespace) -> list[str]:
    """`sceneseg segment` through the installed script when there is one, else ``python -m flows.cli``."""
    script = Path(sys.executable).with_name("sceneseg")
    head = [str(script)] if script.exists() else [sys.executable, "-m", "flows.cli"]
    return [
        *head, "segment", str(scene), "--out", str(out), "--model", str(model), "--overwrite",
        "--device", args.device, "--block-size", str(args.block_size), "--max-in-flight", str(args.max_in_flight),
        *(["--batch-size", str(args.batch_size)] if args.batch_size else []),
    ]


def run_measured(command: list[str], log: Path, interval: float, cores: set[int] | None = None) -> dict:
    """Run ``command``, sampling its process tree; the peaks, its ru_maxrss, exit code, seconds and CPU seconds.

    ``cores``: the CPUs the command may run on (its affinity, which the pipeline sizes its threads by).
    CPU seconds are the child's and those of its descendants it reaped (the vector chunk processes).
    """
    started = time.perf_counter()
    with log.open("w") as fh:
        proc = subprocess.Popen(command, cwd=common.ROOT, env=common.child_env(), stdout=fh,
                                stderr=subprocess.STDOUT,
                                preexec_fn=(lambda: os.sched_setaffinity(0, cores)) if cores else None)
        with common.TreeMemorySampler(proc.pid, interval) as sampler:
            # wait4 gives this child's own rusage; RUSAGE_CHILDREN would be the maximum over all runs so far.
            _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - started
    return {
        "rc": proc.returncode,
        "seconds": round(seconds, 2),
        "peak_rss_mib": round(sampler.peak_rss / _MIB, 1),
        "peak_anon_rss_mib": round(sampler.peak_anon / _MIB, 1),
        "peak_rss_at_s": round(sampler.peak_rss_at, 2),
        "peak_anon_rss_at_s": round(sampler.peak_anon_at, 2),
        "ru_maxrss_mib": round(usage.ru_maxrss / 1024, 1),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
        "samples": sampler.samples,
    }


def stage_at(run_json: Path, wall_s: float, at_s: float) -> str | None:
    """The pipeline stage running ``at_s`` seconds into the command, from the stage seconds in its run JSON.

    The stages are laid out back from the end of the command (what follows them, saving the run record
    and exiting, is short), so the answer is approximate near a stage boundary; "startup" is imports
    and everything before the first stage.
    """
    if not run_json.exists():
        return None
    stages = json.loads(run_json.read_text())["result"]["seconds"]
    start = wall_s - stages["total"]
    if at_s < start:
        return "startup"
    for name, seconds in stages.items():
        if name == "total":
            continue
        start += seconds
        if at_s <= start:
            return name
    return "exit"


def features(run_json: Path) -> dict[str, int] | None:
    """The features the run published per layer (what the vector stage had to hold or stage)."""
    if not run_json.exists():
        return None
    return json.loads(run_json.read_text())["result"].get("counts")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    info = common.machine()
    args.work_dir.mkdir(parents=True, exist_ok=True)
    model, model_description = resolve_model(args.model, args.work_dir)
    runs, skipped = [], []
    for size in args.sizes:
        free = shutil.disk_usage(args.work_dir).free
        if free < disk_needed(size):
            skipped.append({"size": size, "reason": f"{free / 1024**3:.1f} GiB free, "
                                                    f"{disk_needed(size) / 1024**3:.1f} GiB needed"})
            continue
        started = time.perf_counter()
        scene = common.synthetic_scene(args.work_dir, size, args.seed)
        generate_s = time.perf_counter() - started
        repeats = max(1, args.repeat_smallest) if size == args.sizes[0] and len(args.sizes) > 1 else 1
        for attempt in range(repeats):
            out = args.work_dir / f"memory-{size}"
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir(parents=True)
            print(f"segmenting {size}^2 (run {attempt + 1} of {repeats}) ...", file=sys.stderr)
            run = run_measured(segment_command(scene.path, out, model, args), out / "segment.log", args.interval)
            run = {"size": size, "scene_ready_s": round(generate_s, 2), **run}
            run_json = out / f"{scene.path.stem}_run.json"
            run["features"] = features(run_json)
            run["peak_rss_stage"] = stage_at(run_json, run["seconds"], run["peak_rss_at_s"])
            run["peak_anon_rss_stage"] = stage_at(run_json, run["seconds"], run["peak_anon_rss_at_s"])
            if run["rc"] != 0:
                run["log_tail"] = (out / "segment.log").read_text()[-2000:]
            print(f"{size}^2: {run}", file=sys.stderr)
            runs.append(run)

    # Per size, the run with the highest peak (the smallest size may have run several times).
    by_size: dict[int, dict] = {}
    for r in runs:
        if r["rc"] == 0 and r["peak_rss_mib"] >= by_size.get(r["size"], {}).get("peak_rss_mib", -1.0):
            by_size[r["size"]] = r
    ok = [by_size[size] for size in sorted(by_size)]
    ratios = {}
    if len(ok) >= 2:
        small, large = ok[0], ok[-1]
        ratios[f"{large['size']}/{small['size']}"] = {
            "rss": round(large["peak_rss_mib"] / small["peak_rss_mib"], 3),
            "anon_rss": round(large["peak_anon_rss_mib"] / small["peak_anon_rss_mib"], 3),
        }
    target = None
    if 32768 in by_size and 4096 in by_size:
        target = round(by_size[32768]["peak_rss_mib"] / by_size[4096]["peak_rss_mib"], 3)
    output = {
        "benchmark": "memory",
        "machine": info,
        "model": {"path": str(model), "description": model_description},
        "settings": {"block_size": args.block_size, "batch_size": args.batch_size,
                     "max_in_flight": args.max_in_flight, "device": args.device, "interval_s": args.interval,
                     "repeat_smallest": args.repeat_smallest},
        "sizes_requested": args.sizes,
        "sizes_run": [r["size"] for r in ok],
        "runs": runs,
        "skipped": skipped,
        "ratios_largest_over_smallest": ratios,
        "ratio_32768_over_4096": target,
        "target_ratio": 1.25,
        "ratio_8192_over_2048": (round(by_size[8192]["peak_rss_mib"] / by_size[2048]["peak_rss_mib"], 3)
                                 if 8192 in by_size and 2048 in by_size else None),
        "target_ratio_8192_over_2048": 1.15,
        "quick": args.quick,
    }
    def peaks(size: int) -> str:
        same = [r for r in runs if r["size"] == size and r["rc"] == 0]
        if len(same) == 1:
            return ""
        return " (highest of " + ", ".join(f"{r['peak_rss_mib']:.0f}" for r in same) + ")"

    parts = [f"{r['size']}^2: RSS {r['peak_rss_mib']:.0f} MiB{peaks(r['size'])} (in {r['peak_rss_stage']}), anon "
             f"{r['peak_anon_rss_mib']:.0f} MiB (in {r['peak_anon_rss_stage']}), {r['seconds']:.0f} s"
             for r in ok]
    parts += [f"{name}: **RSS x{v['rss']}**, anon x{v['anon_rss']}" for name, v in ratios.items()]
    parts += [f"{r['size']}^2 failed (rc {r['rc']})" for r in runs if r["rc"] != 0]
    parts += [f"{s['size']}^2 skipped ({s['reason']})" for s in skipped]
    key = f"sizes run {output['sizes_run']}; {model_description}; " + "; ".join(parts)
    common.finish(args, "memory.py", output, key)


if __name__ == "__main__":
    main()
