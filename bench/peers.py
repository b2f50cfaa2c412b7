"""sceneseg against the usual tile-and-merge libraries, with the same model, tile size and overlap.

On one synthetic RGB image (2048 x 2048 by default) each method runs in a fresh child process, so its
peak RSS (``ru_maxrss``) is its own:

* ``reference``: one forward pass of the whole image (mirror-padded to a multiple of 2**depth): the
  result every tiled method should reproduce. Its memory grows with the image.
* ``sceneseg``: ``segment_scene`` from the GeoTIFF to the mask COG and the GeoPackage (the whole
  product, vectors included; the model is loaded inside the timed call).
* ``sceneseg-blocks``: the in-memory core of it: the BlockPlan's blocks through ``process_block``
  (windowed read with mirror padding, tiles, model, blend) into a mask array, from the GeoTIFF.
* ``pytorch-toolbelt``: ``ImageSlicer`` (mirror border, "pyramid" weights) + ``TileMerger``.
* ``tiler``: ``Tiler`` with its documented reflect padding + ``Merger`` with a Hann window.

Peers start from the normalized image already in memory; their timing covers tiling, the forward
passes, merging and the argmax. Agreement is the share of pixels whose argmax class equals the
reference's (fp32 always).

Each ``--precisions`` entry is one round of every method:

* ``default``: sceneseg at its defaults (``--precision auto``: bf16 where the CPU or GPU has it natively,
  fp32 elsewhere; channels_last and one tile a forward on CPU), the peers as their documentation uses
  them (fp32, NCHW) at ``--batch-size``.
* ``bf16``: every method under bf16 autocast. On a CPU without native bf16 (no ``amx_bf16`` or
  ``avx512_bf16`` in ``lscpu``) bf16 is emulated and slow for every method: the round is skipped, with
  the reason, unless ``--precisions bf16`` is asked for alone.
* ``fp32``: every method in fp32 (sceneseg too) at ``--batch-size``, which isolates tiling and blending.

Peers are optional and not dependencies of sceneseg; a missing one is reported as "not installed".
Install them without letting pip touch torch (see bench/README.md):

    .venv/bin/pip install --no-deps pytorch-toolbelt==0.8.0 tiler opencv-python-headless tqdm

    python bench/peers.py                  # 2048 x 2048, rounds "default" and "bf16"
    python bench/peers.py --precisions fp32
    python bench/peers.py --quick          # 512 x 512, not recorded
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import common

# Each method runs in a child process of its own and imports only what it needs inside its function:
# the peak RSS of a peer must not include sceneseg's modules, nor sceneseg's the peers'.
import numpy as np

from pipeline.config import DEFAULTS

METHODS = ("reference", "sceneseg", "sceneseg-blocks", "pytorch-toolbelt", "tiler")
PRECISIONS = ("default", "bf16", "fp32")
QUICK_SIZE = 512
# Small, so that the warm-up forward does not set a process's peak RSS before the timed part starts.
WARM_UP_SIDE = 64
#: The peers' batch (and sceneseg's in the equal-settings rounds): 4, as in every earlier peers row of
#: bench/RESULTS.md.
PEER_BATCH_SIZE = 4


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=2048, help="Side of the synthetic image in pixels.")
    parser.add_argument("--model", default=common.DEMO_MODEL,
                        help="Checkpoint path or packaged name (default: synthetic-demo, or an untrained "
                             "U-Net of its shape while it is not packaged).")
    parser.add_argument("--device", default=DEFAULTS["device"], help="auto, cpu, cuda or cuda:N.")
    parser.add_argument("--batch-size", type=int, default=PEER_BATCH_SIZE,
                        help="Tiles per forward pass of the peers, and of sceneseg in the bf16 and fp32 rounds "
                             "(in the default round sceneseg runs at its own default for the device).")
    parser.add_argument("--tile", type=int, default=None, help="Tile side [default: the checkpoint's].")
    parser.add_argument("--overlap", type=int, default=None, help="Tile overlap [default: the checkpoint's].")
    parser.add_argument("--block-size", type=int, default=DEFAULTS["block_size"], help="sceneseg block side in pixels.")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--precisions", nargs="+", default=["default", "bf16"], choices=PRECISIONS,
                        help="Rounds of every method (see the module docstring).")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32", help=argparse.SUPPRESS)
    parser.add_argument("--worker", choices=METHODS, help=argparse.SUPPRESS)
    parser.add_argument("--scene", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    common.add_common_args(parser)
    args = parser.parse_args(argv)
    if args.quick:
        args.size = min(args.size, QUICK_SIZE)
    return args


# --------------------------------------------------------------------------------------------------
# Peers, found without importing them in the parent


def _toolbelt_tiles_path() -> Path | None:
    spec = importlib.util.find_spec("pytorch_toolbelt")
    if spec is None or not spec.submodule_search_locations or importlib.util.find_spec("cv2") is None:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "inference" / "tiles.py"
    return path if path.is_file() else None


def load_toolbelt_tiles():
    """pytorch_toolbelt.inference.tiles, loaded from its file.

    The package's ``__init__`` imports torchvision, which sceneseg does not install (pip would pull a
    second torch); the tiles module itself needs only cv2, numpy and torch.
    """
    path = _toolbelt_tiles_path()
    spec = importlib.util.spec_from_file_location("pytorch_toolbelt_tiles", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def missing_peer(method: str) -> str | None:
    """Why ``method`` cannot run here, or None."""
    if method == "pytorch-toolbelt" and _toolbelt_tiles_path() is None:
        return "not installed (pytorch-toolbelt and opencv-python-headless)"
    if method == "tiler" and importlib.util.find_spec("tiler") is None:
        return "not installed (tiler)"
    return None


# --------------------------------------------------------------------------------------------------
# Worker side: one method in this process


def _load(args: argparse.Namespace):
    """Model on its device, its card, and the normalized image (bands, rows, cols) float32."""
    import rasterio

    from models.checkpoint import load_checkpoint
    from models.device import resolve_device

    loaded = load_checkpoint(args.model)
    device = resolve_device(args.device)
    model = loaded.model.to(device).eval()
    card = loaded.card
    with rasterio.open(args.scene) as src:
        raw = src.read(card.bands).astype(np.float32)
    mean = np.asarray(card.mean, dtype=np.float32)[:, None, None]
    std = np.asarray(card.std, dtype=np.float32)[:, None, None]
    return model, card, device, (raw - mean) / std


def _forward(args, model, x):
    """The model's logits as fp32, under bf16 autocast in the bf16 round (peers' fp32 otherwise)."""
    import torch

    if args.precision != "bf16":
        return model(x).float()
    with torch.autocast(x.device.type, dtype=torch.bfloat16):
        return model(x).float()


def _probabilities(args, model, x, activation: str):
    import torch

    logits = _forward(args, model, x)
    return torch.softmax(logits, 1) if activation == "softmax" else torch.sigmoid(logits)


def run_reference(args, model, card, device, image) -> tuple[np.ndarray, int]:
    import torch

    multiple = 2 ** int(card.arch_kwargs.get("depth", 0))
    rows, cols = image.shape[1:]
    pad = ((0, 0), (0, -rows % multiple), (0, -cols % multiple))
    x = torch.from_numpy(np.pad(image, pad, mode="reflect"))[None].to(device)
    with torch.inference_mode():
        logits = model(x)[0, :, :rows, :cols]
    return logits.argmax(0).to(torch.uint8).cpu().numpy(), 1


def run_toolbelt(args, model, card, device, image) -> tuple[np.ndarray, int]:
    import cv2
    import torch

    tiles_mod = load_toolbelt_tiles()
    tile, overlap = args.tile, args.overlap
    hwc = np.ascontiguousarray(image.transpose(1, 2, 0))
    slicer = tiles_mod.ImageSlicer(hwc.shape[:2], tile_size=tile, tile_step=tile - overlap, weight="pyramid")
    tiles = slicer.split(hwc, border_type=cv2.BORDER_REFLECT101)
    merger = tiles_mod.TileMerger(slicer.target_shape, len(card.classes), slicer.weight, device=device)
    with torch.inference_mode():
        for start in range(0, len(tiles), args.batch_size):
            batch = np.stack(tiles[start : start + args.batch_size]).transpose(0, 3, 1, 2)
            x = torch.from_numpy(np.ascontiguousarray(batch)).to(device)
            probs = _probabilities(args, model, x, card.activation)
            merger.integrate_batch(probs, slicer.crops[start : start + args.batch_size])
        merged = merger.merge().argmax(0).to(torch.uint8).cpu().numpy()
    return slicer.crop_to_orignal_size(merged), len(tiles)


def run_tiler(args, model, card, device, image) -> tuple[np.ndarray, int]:
    import torch
    from tiler import Merger, Tiler

    tile, overlap = args.tile, args.overlap
    bands = image.shape[0]
    tiler = Tiler(data_shape=image.shape, tile_shape=(bands, tile, tile), overlap=overlap,
                  channel_dimension=0, mode="reflect")
    new_shape, padding = tiler.calculate_padding()
    tiler.recalculate(data_shape=new_shape)
    padded = np.pad(image, padding, mode="reflect")
    # Outputs have classes, not bands: a second tiler over the same spatial grid places them.
    out_tiler = Tiler(data_shape=new_shape[1:], tile_shape=(tile, tile), overlap=overlap, mode="reflect")
    merger = Merger(out_tiler, window="hann", logits=len(card.classes))
    with torch.inference_mode():
        for batch_id, batch in tiler(padded, batch_size=args.batch_size):
            x = torch.from_numpy(np.ascontiguousarray(batch)).to(device)
            probs = _probabilities(args, model, x, card.activation).cpu().numpy()
            merger.add_batch(batch_id, args.batch_size, probs)
    merged = merger.merge(extra_padding=padding[1:], argmax=True)
    return merged.astype(np.uint8), len(tiler)


PEER_RUNNERS = {"reference": run_reference, "pytorch-toolbelt": run_toolbelt, "tiler": run_tiler}


def _sceneseg_config(args):
    from pipeline.config import SegmentConfig

    # The same model, tiles and overlap as the peers; the precision of the round. The default round runs
    # sceneseg at its defaults (precision and batch size by device), the others at the peers' batch.
    default = args.precision == "default"
    precision = DEFAULTS["precision"] if default else args.precision
    batch_size = DEFAULTS["batch_size"] if default else args.batch_size
    return SegmentConfig(model=str(args.model), tile_size=args.tile, overlap=args.overlap,
                         block_size=args.block_size, batch_size=batch_size, device=args.device,
                         precision=precision, overwrite=True)


Run = Callable[[], tuple[np.ndarray | Path, int, dict]]


def setup_peer(args: argparse.Namespace) -> Run:
    """Load the model and the image and warm the model up; the timed part tiles, infers and merges."""
    import torch

    model, card, device, image = _load(args)
    with torch.inference_mode():
        model(torch.zeros((1, len(card.bands), WARM_UP_SIDE, WARM_UP_SIDE), device=device))
    runner = PEER_RUNNERS[args.worker]

    def run() -> tuple[np.ndarray, int, dict]:
        mask, tiles = runner(args, model, card, device, image)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return mask, tiles, {}

    return run


def setup_sceneseg_blocks(args: argparse.Namespace) -> Run:
    """Plan and load the predictor (warmed up); the timed part reads, infers and blends every block."""
    from pipeline.grid import Region
    from pipeline.raster.blend import UnitAssembler
    from pipeline.raster.blocks import process_block
    from pipeline.raster.infer import get_predictor
    from pipeline.stages import prepare

    job = prepare(args.scene, args.result.with_suffix(""), _sceneseg_config(args))
    plan = job.plan
    predictor = get_predictor(job.checkpoint, job.block_job.inference)
    predictor.predict(np.zeros((1, len(job.block_job.bands), WARM_UP_SIDE, WARM_UP_SIDE), dtype=np.float32))

    def run() -> tuple[np.ndarray, int, dict]:
        mask = np.empty((plan.scene.rows, plan.scene.cols), dtype=np.uint8)
        scene = Region.of_shape(plan.scene)
        assembler = UnitAssembler()
        for block in plan.blocks():
            output = process_block(job.block_job, block.index)
            for unit in [*output.finals, *assembler.add(output.partials)]:
                mask[unit.region.slices_in(scene)] = unit.mask
        return mask, plan.n_tiles.size, {}

    return run


def setup_sceneseg(args: argparse.Namespace) -> Run:
    """Nothing ahead: the timed part is the whole ``segment_scene``, model loading included."""
    from pipeline.stages import segment_scene

    out = args.result.with_suffix("")
    shutil.rmtree(out, ignore_errors=True)

    def run() -> tuple[Path, int, dict]:
        result = segment_scene(args.scene, out, _sceneseg_config(args))
        stages = {k: round(v, 3) for k, v in result.seconds.items()}
        return result.mask_path, result.tiles, {"stage_seconds": stages}

    return run


def worker(args: argparse.Namespace) -> None:
    """Run one method and print its JSON line: seconds, tiles, peak and baseline RSS."""
    import rasterio
    import torch

    # As pipeline.raster.infer.get_predictor does, so that every method computes with the same threads.
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    setups = {"sceneseg": setup_sceneseg, "sceneseg-blocks": setup_sceneseg_blocks}
    run = setups.get(args.worker, setup_peer)(args)
    baseline = common.own_peak_rss_mib()
    started = time.perf_counter()
    mask, tiles, extra = run()
    seconds = time.perf_counter() - started
    peak = common.own_peak_rss_mib()
    if isinstance(mask, Path):
        with rasterio.open(mask) as src:
            mask = src.read(1)
    np.save(args.result, np.ascontiguousarray(mask, dtype=np.uint8))
    print(json.dumps({"seconds": round(seconds, 3), "tiles": tiles, "peak_rss_mib": round(peak, 1),
                      "baseline_rss_mib": round(baseline, 1), **extra}))


# --------------------------------------------------------------------------------------------------
# Parent side


def run_worker(method: str, precision: str, args: argparse.Namespace, scene: Path, model: Path, tile: int,
               overlap: int) -> dict:
    """Run ``method`` in a fresh process in the round ``precision``; its numbers, or why it failed."""
    result = args.work_dir / f"peers-{args.size}-{method}-{precision}.npy"
    command = [
        sys.executable, __file__, "--worker", method, "--precision", precision, "--scene", str(scene),
        "--result", str(result),
        "--model", str(model), "--device", args.device, "--batch-size", str(args.batch_size),
        "--tile", str(tile), "--overlap", str(overlap), "--block-size", str(args.block_size),
        "--work-dir", str(args.work_dir),
    ]
    proc = subprocess.run(command, capture_output=True, text=True, env=common.child_env(), cwd=common.ROOT)
    if proc.returncode != 0:
        return {"status": "failed", "error": proc.stderr.strip()[-1500:]}
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["mask"] = result
    return {"status": "ok", **out}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.worker:
        worker(args)
        return
    info = common.machine()
    from models.checkpoint import load_checkpoint

    model = common.bench_model(args.model, args.work_dir)
    card = load_checkpoint(model.path).card
    tile = args.tile or card.tile_size
    overlap = args.overlap if args.overlap is not None else 2 * card.context_margin
    scene = common.synthetic_scene(args.work_dir, args.size, args.seed)

    from models.device import NATIVE_BF16_FLAGS, choose_precision, cpu_flags, resolve_device
    from pipeline.raster.infer import default_batch_size

    device = resolve_device(args.device)
    native = device.type == "cuda" or bool(NATIVE_BF16_FLAGS & cpu_flags())
    default_dtype, default_reason = choose_precision(device, DEFAULTS["precision"])
    default_batch = DEFAULTS["batch_size"] or default_batch_size(device)
    rounds: dict[str, dict[str, dict]] = {}
    skipped: dict[str, str] = {}
    reference: dict = {}
    if "reference" in args.methods:
        print("running reference (fp32) ...", file=sys.stderr)
        reference = run_worker("reference", "fp32", args, scene.path, model.path, tile, overlap)
    for precision in args.precisions:
        if precision == "bf16" and not native and args.precisions != ["bf16"]:
            skipped[precision] = ("this CPU has no native bf16 (neither amx_bf16 nor avx512_bf16): autocast "
                                  "emulates it, slower for every method; ask for --precisions bf16 alone to run it")
            continue
        results = rounds[precision] = {}
        for method in (m for m in args.methods if m != "reference"):
            reason = missing_peer(method)
            if reason:
                results[method] = {"status": reason}
                continue
            print(f"running {method} ({precision}) ...", file=sys.stderr)
            results[method] = run_worker(method, precision, args, scene.path, model.path, tile, overlap)
            print(f"{method} ({precision}): {results[method]}", file=sys.stderr)

    ref_mask = np.load(reference.pop("mask")) if reference.get("status") == "ok" else None
    if reference.get("status") == "ok":
        reference["mpx_per_s"] = round(args.size**2 / reference["seconds"] / 1e6, 4)
    for results in rounds.values():
        for method, res in results.items():
            if res.get("status") != "ok":
                continue
            res["mpx_per_s"] = round(args.size**2 / res["seconds"] / 1e6, 4)
            mask = np.load(res.pop("mask"))
            if ref_mask is not None and mask.shape == ref_mask.shape:
                res["agreement_with_reference"] = round(float(np.mean(mask == ref_mask)), 6)
            res["tile_overhead"] = round(res["tiles"] * tile * tile / args.size**2, 4)
        ours = results.get("sceneseg", {})
        if ours.get("status") == "ok":
            speedup = {peer: round(results[peer]["seconds"] / ours["seconds"], 3)
                           for peer in ("pytorch-toolbelt", "tiler") if results.get(peer, {}).get("status") == "ok"}
            results["sceneseg"]["speedup_over"] = speedup

    output = {
        "benchmark": "peers",
        "machine": info,
        "model": {"path": str(model.path), "description": model.description, "untrained": model.untrained},
        "image": {"path": str(scene.path), "size": args.size, "seed": args.seed},
        "settings": {"tile": tile, "overlap": overlap, "batch_size": args.batch_size, "device": args.device,
                     "block_size": args.block_size,
                     "sceneseg_default_precision": "bf16" if default_dtype is not None else "fp32",
                     "sceneseg_default_batch_size": default_batch,
                     "why": default_reason},
        "reference": reference,
        "rounds": rounds,
        "skipped_rounds": skipped,
        "target_speedup": 2.0,
        "quick": args.quick,
    }
    parts = []
    if reference.get("status") == "ok":
        parts.append(f"reference (one forward, fp32): {reference['seconds']:.1f} s, peak RSS "
                     f"{reference['peak_rss_mib']:.0f} MiB")
    for precision, results in rounds.items():
        for method, res in results.items():
            if res.get("status") != "ok":
                parts.append(f"{method} [{precision}]: {res['status']}")
                continue
            agree = res.get("agreement_with_reference")
            extra = f", {res['tiles']} tiles, agreement {agree:.5f}" if agree is not None else ""
            speed = res.get("speedup_over")
            extra += ("; speed-up " + ", ".join(f"x{v} over {k}" for k, v in speed.items())) if speed else ""
            parts.append(f"{method} [{precision}]: {res['seconds']:.1f} s, peak RSS {res['peak_rss_mib']:.0f} MiB "
                         f"(baseline {res['baseline_rss_mib']:.0f}){extra}")
    parts += [f"round {p} skipped: {why}" for p, why in skipped.items()]
    key = (f"{args.size}^2, tile {tile}/overlap {overlap}, peer batch {args.batch_size}, sceneseg default batch "
           f"{default_batch}; sceneseg default precision "
           f"{output['settings']['sceneseg_default_precision']} ({default_reason}); {model.description}. "
           + "; ".join(parts))
    common.finish(args, "peers.py", output, key)


if __name__ == "__main__":
    main()
