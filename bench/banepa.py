"""Building quality on held-out real imagery, through the commands a user runs: `sceneseg segment` and
`sceneseg evaluate` on the Banepa rows that training never saw, at their own resolution and resampled.

Each held-out row of tiles (../shared/data/banepa: drone RGB ~0.13 m, OpenStreetMap footprints) is written
as one GeoTIFF with its footprints clipped to it; optionally also resampled to other ground sample
distances (a drone scene at 0.075 m, a satellite-like one at 0.3 m), which the pipeline reads back at the
model's GSD. The JSON gives per row and GSD: building precision, recall, F1 at IoU >= 0.5, pixel IoU,
buildings predicted vs true, and the segment command's Mpx/s (its wall time, Python start included; the
run JSON beside the outputs has the seconds of each stage).

    python bench/banepa.py                                 # validation and test rows, native GSD
    python bench/banepa.py --gsd 0.075 0.3 --model buildings-banepa --tta

Imagery: OpenAerialMap (CC-BY-4.0); footprints: (c) OpenStreetMap contributors (ODbL).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import common
import geopandas as gpd
import numpy as np
import rasterio
import rasterio.windows
from affine import Affine
from rasterio.enums import Resampling
from rasterio.features import rasterize
from rasterio.warp import reproject

from pipeline.grid import GeoGrid, Shape2d
from pipeline.ground import GroundFrame
from pipeline.outputs.preview import encode_png
from pipeline.training.banepa import TEST_ROWS, VAL_ROWS, load_row

DATA = common.ROOT.parent / "shared" / "data" / "banepa"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA, help="The Banepa folder (tiles/, buildings.gpkg).")
    parser.add_argument("--model", default="buildings-banepa", help="Checkpoint path or packaged model name.")
    parser.add_argument("--rows", type=int, nargs="+", default=[*VAL_ROWS, *TEST_ROWS])
    parser.add_argument("--gsd", type=float, nargs="*", default=[],
                        help="Also score each row resampled to these ground sample distances (m).")
    parser.add_argument("--tta", action="store_true", help="Segment with --tta.")
    parser.add_argument("--overlay", type=Path, default=None,
                        help="Write a PNG of the first row's west end: OSM footprints cyan, predicted buildings red.")
    parser.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="More `sceneseg segment` options.")
    common.add_common_args(parser)
    return parser.parse_args(argv)


def write_row(data: Path, row: int, out: Path, gsd_m: float | None) -> tuple[Path, Path, float]:
    """The row as a GeoTIFF (resampled to ``gsd_m`` if given) and its truth GeoPackage; returns its GSD."""
    scene = load_row(data, row)
    grid = GeoGrid(scene.shape, scene.transform, scene.crs)
    native = GroundFrame.for_grid(grid).pixel_size_m
    image, transform = scene.image, scene.transform
    if gsd_m is not None:
        f = gsd_m / native
        shape = Shape2d(round(scene.shape.rows / f), round(scene.shape.cols / f))
        transform = scene.transform @ Affine.scale(scene.shape.cols / shape.cols, scene.shape.rows / shape.rows)
        image = np.zeros((image.shape[0], shape.rows, shape.cols), dtype=image.dtype)
        reproject(scene.image, image, src_transform=scene.transform, src_crs=scene.crs, dst_transform=transform,
                  dst_crs=scene.crs, resampling=Resampling.average if f > 1 else Resampling.bilinear)
    tag = f"{row}" + (f"-{gsd_m:g}m" if gsd_m else "")
    tif = out / f"banepa-{tag}.tif"
    profile = dict(driver="GTiff", width=image.shape[2], height=image.shape[1], count=image.shape[0],
                   dtype=image.dtype.name, crs=scene.crs, transform=transform, tiled=True, compress="deflate")
    with rasterio.open(tif, "w", **profile) as dst:
        dst.write(image)
    truth = out / f"banepa-{tag}-truth.gpkg"
    scene.truth.to_file(truth, layer="buildings", engine="pyogrio")
    return tif, truth, gsd_m or native


def write_overlay(tif: Path, gpkg: Path, truth: Path, dst: Path, cols: int = 1024) -> Path:
    """The scene's first ``cols`` columns with the true (cyan) and predicted (red) outlines drawn on it."""
    with rasterio.open(tif) as ds:
        window = rasterio.windows.Window(0, 0, min(cols, ds.width), ds.height)
        rgb = ds.read([1, 2, 3], window=window)
        transform = ds.window_transform(window)
        crs = ds.crs
    shape = rgb.shape[1:]
    for path, colour in ((truth, (0, 255, 255)), (gpkg, (255, 40, 40))):
        frame = gpd.read_file(path, layer="buildings", engine="pyogrio").to_crs(crs)
        lines = [g.boundary for g in frame.geometry if g is not None]
        if lines:
            edge = rasterize(((g, 1) for g in lines), out_shape=shape, transform=transform, dtype="uint8")
            for band, value in zip(rgb, colour, strict=True):
                band[edge > 0] = value
    dst.write_bytes(encode_png(np.moveaxis(rgb, 0, -1)))
    return dst


def run(argv: list[str]) -> dict:
    done = subprocess.run([sys.executable, "-m", "flows.cli", *argv], capture_output=True, text=True,
                          env=common.child_env())
    if done.returncode != 0:
        raise SystemExit(f"sceneseg {' '.join(argv)} failed:\n{done.stderr[-4000:]}")
    return done


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    info = common.machine()
    work = args.work_dir / "banepa"
    work.mkdir(parents=True, exist_ok=True)
    results = []
    for row in args.rows:
        for gsd in [None, *args.gsd]:
            tif, truth, pixel_m = write_row(args.data, row, work, gsd)
            out = work / f"out-{tif.stem}"
            options = ["--model", args.model, "--overwrite", *(["--tta"] if args.tta else []), *args.extra]
            started = time.perf_counter()
            run(["segment", str(tif), "--out", str(out), *options])
            seconds = time.perf_counter() - started
            scores = json.loads(run(["evaluate", str(out / "sceneseg.gpkg"), str(truth)]).stdout)
            pixel = json.loads(run(["evaluate", str(out / f"{tif.stem}_mask.tif"), str(truth)]).stdout)
            with rasterio.open(tif) as ds:
                mpx = ds.width * ds.height / 1e6
            n_true = len(gpd.read_file(truth, engine="pyogrio"))
            results.append({
                "row": row, "gsd_m": round(pixel_m, 4), "resampled": gsd is not None,
                "precision": scores.get("building_precision"), "recall": scores.get("building_recall"),
                "f1": scores.get("building_f1"), "pixel_iou": pixel.get("building_pixel_iou"),
                "predicted": scores["building_tp"] + scores["building_fp"], "true": n_true,
                "segment_seconds": round(seconds, 1), "segment_mpx_per_s": round(mpx / seconds, 4),
            })
            print(json.dumps(results[-1]), file=sys.stderr)
            if args.overlay is not None and len(results) == 1:
                write_overlay(tif, out / "sceneseg.gpkg", truth, args.overlay)
    output = {"benchmark": "banepa", "machine": info, "model": args.model, "tta": args.tta, "rows": results,
              "target_f1": 0.66, "quick": args.quick}
    key = "; ".join(f"row {r['row']} @ {r['gsd_m']} m: F1 {r['f1']:.3f} (P {r['precision']:.3f} R {r['recall']:.3f}, "
                    f"{r['predicted']}/{r['true']}), pixel IoU {r['pixel_iou']:.3f}, {r['segment_mpx_per_s']} Mpx/s"
                    for r in results)
    common.finish(args, "banepa.py", output, f"model {args.model}{' --tta' if args.tta else ''}: {key}")


if __name__ == "__main__":
    main()
