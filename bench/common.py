"""What the benchmark scripts share: the machine's description, cached synthetic scenes, the model to
measure, peak-memory probes, and the JSON line plus the dated row in bench/RESULTS.md that each run leaves.

Benchmarks are not tests: they print one JSON object on stdout and, unless ``--quick`` or ``--no-record``,
append one row to RESULTS.md. Scenes and checkpoints are cached in a work directory (``bench/out`` by
default, ignored by git) so that reruns measure the pipeline, not the scene generator.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# The scripts run as `python bench/x.py` from a source checkout, installed or not.
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402

from models.checkpoint import ModelCard, find_checkpoint, load_checkpoint, save_checkpoint  # noqa: E402
from models.factory import create_model  # noqa: E402
from pipeline.errors import CheckpointError  # noqa: E402
from pipeline.grid import Shape2d  # noqa: E402
from pipeline.synthetic import SyntheticScene, write_synthetic_scene  # noqa: E402

__all__ = [
    "ROOT",
    "RESULTS",
    "DEFAULT_WORK_DIR",
    "DEMO_MODEL",
    "BenchModel",
    "add_common_args",
    "machine",
    "machine_line",
    "synthetic_scene",
    "bench_model",
    "untrained_checkpoint",
    "TreeMemorySampler",
    "own_peak_rss_mib",
    "child_env",
    "emit",
    "record",
    "finish",
]

RESULTS = ROOT / "bench" / "RESULTS.md"
DEFAULT_WORK_DIR = ROOT / "bench" / "out"
DEMO_MODEL = "synthetic-demo"

_RESULTS_HEADER = """# Benchmark results

Rows are appended by the scripts in `bench/` (see `bench/README.md` for what each one measures and the
targets). A `--quick` run never writes here. Every ratio in a row was measured within that one run, on
the machine the row names; the load average shows how busy that machine was at the start.

| date (UTC) | script | command | machine | key numbers |
| --- | --- | --- | --- | --- |
"""


def add_common_args(parser: argparse.ArgumentParser) -> None:
    """Options every script takes: work directory, smoke size, and whether to record."""
    parser.add_argument("--work-dir", type=Path, default=DEFAULT_WORK_DIR,
                        help="Cache of synthetic scenes, checkpoints and outputs (default: bench/out).")
    parser.add_argument("--seed", type=int, default=7, help="Seed of the synthetic scenes.")
    parser.add_argument("--quick", action="store_true",
                        help="A small smoke run that checks the script works; never recorded.")
    parser.add_argument("--no-record", action="store_true", help="Do not append a row to bench/RESULTS.md.")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, Any]:
    """The machine a number was measured on: CPU, cores, memory, torch, GPU and how busy it was."""
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "ram_gib": round(psutil.virtual_memory().total / 1024**3, 1),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "gpu": gpu,
        "python": platform.python_version(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }


def machine_line(info: dict[str, Any]) -> str:
    """The machine in one line of RESULTS.md."""
    gpu = info["gpu"] or "no GPU"
    return (f"{info['cpu']}, {info['cores']} cores, {info['ram_gib']} GiB, torch {info['torch']}, {gpu}, "
            f"load {info['load_avg_1m']}")


def synthetic_scene(work_dir: Path, size: int, seed: int):
    """A ``size`` x ``size`` RGB synthetic scene in ``work_dir``, generated once and reused.

    ``write_synthetic_scene`` renders and writes block by block and renames into place when done, so a
    scene file that exists is complete; its truth GeoPackage is written after it.
    """
    import rasterio


    work_dir.mkdir(parents=True, exist_ok=True)
    path = work_dir / f"scene-{size}-s{seed}.tif"
    truth = path.with_suffix(".gpkg")
    if path.exists() and truth.exists():
        with rasterio.open(path) as src:
            shape = Shape2d(src.height, src.width)
            return SyntheticScene(path, truth, shape, src.crs.to_string(), src.transform, seed)
    started = time.perf_counter()
    scene = write_synthetic_scene(path, size, size, seed=seed, block_size=2048)
    print(f"wrote {path} in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    return scene


@dataclass(frozen=True)
class BenchModel:
    """The checkpoint a benchmark runs and a sentence saying what it is."""

    path: Path
    description: str
    untrained: bool


def untrained_checkpoint(work_dir: Path, base_channels: int, depth: int, tile_size: int = 512,
                         context_margin: int = 24, background_bias: float = 0.0) -> Path:
    """A freshly initialised (seeded, untrained) U-Net checkpoint for RGB scenes, cached in ``work_dir``.

    Its speed and memory are those of a trained model of the same shape; its masks are meaningless.
    ``background_bias`` is added to the background logit: some random initialisations paint a speckle of
    thousands of "buildings" per tile, which would make a run measure polygonizing noise.
    """
    import torch


    bias = f"-b{background_bias:g}" if background_bias else ""
    path = work_dir / f"untrained-unet-c{base_channels}-d{depth}-t{tile_size}-m{context_margin}{bias}.pt"
    if path.exists():
        return path
    torch.manual_seed(0)
    kwargs = {"in_channels": 3, "num_classes": 3, "base_channels": base_channels, "depth": depth}
    model = create_model("unet", **kwargs)
    with torch.no_grad():
        model.head.bias[0] += background_bias
    card = ModelCard(
        arch="unet", arch_kwargs=kwargs, classes=["background", "building", "road"], bands=[1, 2, 3],
        mean=[127.0, 127.0, 127.0], std=[50.0, 50.0, 50.0], tile_size=tile_size,
        context_margin=context_margin, training={"note": "untrained: initialised for benchmarks only"},
    )
    work_dir.mkdir(parents=True, exist_ok=True)
    save_checkpoint(path, model, card)
    return path


def bench_model(spec: str, work_dir: Path, *, base_channels: int = 16, depth: int = 4) -> BenchModel:
    """The checkpoint named by ``spec`` (a path or packaged name).

    When ``spec`` is the packaged demo model and it has not been trained and packaged yet, an untrained
    U-Net of ``base_channels`` and ``depth`` stands in for it, and the description says so.
    """

    try:
        path = find_checkpoint(spec)
    except CheckpointError:
        if spec != DEMO_MODEL:
            raise
    else:
        loaded = load_checkpoint(path)
        kwargs = loaded.card.arch_kwargs
        shape = f"{loaded.card.arch} base_channels={kwargs.get('base_channels')} depth={kwargs.get('depth')}"
        description = f"checkpoint {spec} ({loaded.checkpoint_id}, {shape})"
        return BenchModel(path.resolve(), description, untrained=False)
    path = untrained_checkpoint(work_dir, base_channels, depth)
    return BenchModel(
        path.resolve(),
        f"packaged {DEMO_MODEL} not found: untrained unet base_channels={base_channels} depth={depth}, "
        "tile 512 margin 24 (speed is representative, masks are not)",
        untrained=True,
    )


def _anon_rss_bytes(pid: int) -> int:
    """Anonymous resident memory of one process (heap, not file-backed pages such as memory maps)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


class TreeMemorySampler:
    """Polls a process and its children every ``interval`` seconds for their summed resident memory.

    Tracks both RSS (what ``ps`` shows, including file-backed pages of memory-mapped files, which the
    kernel may drop at any time) and anonymous RSS (heap and buffers that cannot be dropped).
    """

    def __init__(self, pid: int, interval: float = 0.05):
        self.process = psutil.Process(pid)
        self.interval = interval
        self.peak_rss = 0
        self.peak_anon = 0
        #: Seconds from the start of sampling to each peak.
        self.peak_rss_at = 0.0
        self.peak_anon_at = 0.0
        self._started = time.perf_counter()
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> TreeMemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        try:
            procs = [self.process, *self.process.children(recursive=True)]
        except psutil.Error:
            return
        rss = anon = 0
        for proc in procs:
            try:
                rss += proc.memory_info().rss
            except psutil.Error:
                continue
            anon += _anon_rss_bytes(proc.pid)
        now = time.perf_counter() - self._started
        if rss > self.peak_rss:
            self.peak_rss, self.peak_rss_at = rss, now
        if anon > self.peak_anon:
            self.peak_anon, self.peak_anon_at = anon, now
        self.samples += 1

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval)


def own_peak_rss_mib() -> float:
    """This process's peak RSS so far (Linux reports ``ru_maxrss`` in KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_env() -> dict[str, str]:
    """The environment for a child Python that must import this checkout's packages."""
    paths = [str(ROOT), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}


def emit(result: dict[str, Any]) -> None:
    """The run's one JSON object, on stdout."""
    json.dump(result, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")
    sys.stdout.flush()


def record(script: str, info: dict[str, Any], key_numbers: str, path: Path = RESULTS) -> None:
    """Append one dated row (command, machine, key numbers) to bench/RESULTS.md."""
    command = " ".join(shlex.quote(a) for a in ["python", f"bench/{script}", *sys.argv[1:]])
    date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M")
    cells = [date, script, f"`{command}`", machine_line(info), key_numbers]
    row = "| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in cells) + " |\n"
    if not path.exists() or not path.read_text().strip():
        path.write_text(_RESULTS_HEADER)
    with path.open("a") as fh:
        fh.write(row)


def finish(args: argparse.Namespace, script: str, result: dict[str, Any], key_numbers: str) -> None:
    """Print the JSON object and record the row unless the run was a smoke run or asked not to."""
    recorded = not (args.quick or args.no_record)
    result["recorded"] = recorded
    emit(result)
    if recorded:
        record(script, result["machine"], key_numbers)
        print(f"recorded in {RESULTS}", file=sys.stderr)
