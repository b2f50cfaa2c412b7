"""Cost against scene size: `sceneseg segment` on the synthetic town, and the CPU side alone per Mpx.

Two parts, in one run, each command in a child process measured as ``bench/memory.py`` measures it (its
process tree polled for the summed RSS, ``os.wait4`` for its CPU seconds, those of the vector chunk
processes it reaped included):

* **model**: ``sceneseg segment`` with ``--model`` (default the packaged ``synthetic-demo``, which finds the
  town's buildings and roads) at each of ``--sizes``: wall seconds, CPU seconds, peak RSS, the seconds of
  every stage (from the run's JSON record) and the features published. Linear cost means wall per pixel and
  peak RSS flat across sizes (targets: wall per pixel at 32768^2 within 1.2x of 8192^2, peak RSS at 32768^2
  <= 1.25x that at 8192^2 and 8192^2 <= 1.15x 2048^2).
* **free**: the same command with the free forward (``bench/free_forward.py``: the town's truth replayed as
  probabilities, no network) at each of ``--free-sizes``, pinned to 1 and to 2 cores (``--free-cores``):
  what everything but the forward pass costs, in CPU seconds per Mpx of scene and Mpx per CPU-second
  (target >= 10 at 8192^2), with the stage seconds.

Scenes are cached in the work directory (a 16384^2 town takes about 9 min to render on 2 cores); the
encoded copy for the free forward is made once per size.

    python bench/scaling.py                                   # 2048 8192 16384 32768, free at 8192
    python bench/scaling.py --sizes 2048 8192 --free-sizes 4096 8192
    python bench/scaling.py --quick                           # 512 and 1024, not recorded
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import common
import memory
import psutil
from free_forward import encode_truth

from pipeline.config import DEFAULTS

QUICK_SIZES = [512, 1024]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[2048, 8192, 16384, 32768],
                        help="Scene sides of the model runs (none: skip them).")
    parser.add_argument("--free-sizes", type=int, nargs="*", default=[8192],
                        help="Scene sides of the free-forward runs (none: skip them).")
    parser.add_argument("--free-cores", type=int, nargs="*", default=[1, 2],
                        help="Core counts the free-forward runs are pinned to (the first N of this process's).")
    parser.add_argument("--model", default=common.DEMO_MODEL, help="Checkpoint path or packaged name.")
    parser.add_argument("--device", default=DEFAULTS["device"], help="auto, cpu, cuda or cuda:N.")
    parser.add_argument("--batch-size", type=int, default=DEFAULTS["batch_size"])
    parser.add_argument("--block-size", type=int, default=DEFAULTS["block_size"])
    parser.add_argument("--max-in-flight", type=int, default=DEFAULTS["max_in_flight"])
    parser.add_argument("--interval", type=float, default=0.05, help="Seconds between memory samples.")
    common.add_common_args(parser)
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.free_sizes = QUICK_SIZES, QUICK_SIZES[-1:]
    args.sizes, args.free_sizes = sorted(set(args.sizes)), sorted(set(args.free_sizes))
    return args


def encoded_scene(work_dir: Path, size: int, seed: int) -> Path:
    """The town of ``size`` with its truth in the code bits, for the free forward (made once)."""
    scene = common.synthetic_scene(work_dir, size, seed)
    path = scene.path.with_name(f"{scene.path.stem}-encoded.tif")
    if not path.exists():
        started = time.perf_counter()
        encode_truth(scene.path, scene.truth_path, path)
        print(f"encoded {path} in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    return path


def free_command(scene: Path, out: Path, model: Path, args: argparse.Namespace) -> list[str]:
    """``sceneseg segment`` with the free forward, the options as for the model runs."""
    command = memory.segment_command(scene, out, model, args)
    return [sys.executable, str(common.ROOT / "bench" / "free_forward.py"), *command[command.index("segment"):]]


def measure(kind: str, size: int, scene: Path, command: list[str], work_dir: Path, interval: float,
            cores: set[int] | None = None) -> dict:
    """One measured run of ``command`` with its stage seconds, features and per-Mpx figures."""
    tag = f"{kind}-{size}" + (f"-c{len(cores)}" if cores else "")
    out = work_dir / f"scaling-{tag}"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    print(f"{tag} ...", file=sys.stderr)
    run = memory.run_measured(command, out / "segment.log", interval, cores)
    mpx = size * size / 1e6
    run = {"kind": kind, "size": size, "mpx": round(mpx, 2), "cores": len(cores) if cores else None, **run}
    run_json = out / f"{scene.stem}_run.json"
    if run["rc"] == 0 and run_json.exists():
        record = json.loads(run_json.read_text())["result"]
        run["stage_seconds"] = {k: round(v, 2) for k, v in record["seconds"].items()}
        run["features"] = record.get("counts")
    else:
        run["log_tail"] = (out / "segment.log").read_text()[-2000:]
    run["wall_s_per_mpx"] = round(run["seconds"] / mpx, 4)
    run["cpu_s_per_mpx"] = round(run["cpu_s"] / mpx, 4)
    run["mpx_per_cpu_s"] = round(mpx / run["cpu_s"], 2) if run["cpu_s"] else None
    print(f"{tag}: {run}", file=sys.stderr)
    shutil.rmtree(out / ".sceneseg-work", ignore_errors=True)
    return run


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    info = common.machine()
    args.work_dir.mkdir(parents=True, exist_ok=True)
    bench_model = common.bench_model(args.model, args.work_dir)
    available = sorted(psutil.Process().cpu_affinity())
    runs, skipped = [], []
    for size in args.sizes:
        if shutil.disk_usage(args.work_dir).free < memory.disk_needed(size):
            skipped.append({"kind": "model", "size": size, "reason": "disk"})
            continue
        scene = common.synthetic_scene(args.work_dir, size, args.seed).path
        runs.append(measure("model", size, scene, memory.segment_command(scene, args.work_dir / f"scaling-model-{size}",
                                                                            bench_model.path, args),
                            args.work_dir, args.interval))
    for size in args.free_sizes:
        scene = encoded_scene(args.work_dir, size, args.seed)
        for n in args.free_cores:
            if n > len(available):
                skipped.append({"kind": "free", "size": size, "cores": n, "reason": f"{len(available)} cores here"})
                continue
            cores = set(available[:n])
            out = args.work_dir / f"scaling-free-{size}-c{n}"
            runs.append(measure("free", size, scene, free_command(scene, out, bench_model.path, args),
                                args.work_dir, args.interval, cores))

    ok = {(r["kind"], r["size"], r["cores"]): r for r in runs if r["rc"] == 0}
    model = sorted((r for r in ok.values() if r["kind"] == "model"), key=lambda r: r["size"])
    ratios = {}
    for a, b in zip(model, model[1:], strict=False):
        ratios[f"{b['size']}/{a['size']}"] = {
            "wall_per_px": round(b["wall_s_per_mpx"] / a["wall_s_per_mpx"], 3),
            "peak_rss": round(b["peak_rss_mib"] / a["peak_rss_mib"], 3),
        }
    output = {
        "benchmark": "scaling",
        "machine": info,
        "model": {"path": str(bench_model.path), "description": bench_model.description},
        "settings": {"block_size": args.block_size, "batch_size": args.batch_size, "max_in_flight": args.max_in_flight,
                     "device": args.device, "seed": args.seed},
        "runs": runs,
        "skipped": skipped,
        "ratios_consecutive_sizes": ratios,
        "quick": args.quick,
    }
    parts = [f"{r['size']}^2: {r['seconds']:.1f} s ({r['wall_s_per_mpx']:.3f} s/Mpx, {r['cpu_s']:.0f} CPU-s), "
             f"peak RSS {r['peak_rss_mib']:.0f} MiB" for r in model]
    parts += [f"{k}: wall/px x{v['wall_per_px']}, RSS x{v['peak_rss']}" for k, v in ratios.items()]
    for r in sorted((r for r in ok.values() if r["kind"] == "free"), key=lambda r: (r["size"], r["cores"])):
        stages = r.get("stage_seconds", {})
        parts.append(f"free forward {r['size']}^2 on {r['cores']} core(s): {r['seconds']:.1f} s, {r['cpu_s']:.1f} CPU-s "
                     f"= **{r['mpx_per_cpu_s']} Mpx per CPU-s**, peak RSS {r['peak_rss_mib']:.0f} MiB, stages "
                     + ", ".join(f"{k} {v}" for k, v in stages.items() if k != "total"))
    parts += [f"{r['kind']} {r['size']}^2 failed (rc {r['rc']})" for r in runs if r["rc"] != 0]
    parts += [f"{s['kind']} {s['size']}^2 skipped ({s['reason']})" for s in skipped]
    common.finish(args, "scaling.py", output, f"{bench_model.description}; " + "; ".join(parts))


if __name__ == "__main__":
    main()
