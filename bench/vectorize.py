"""The vector stage against the plain GDAL-through-Python route, in polygons per second, on one mask.

The mask is the rasterized ground truth of a synthetic scene (8192 x 8192 by default): real building
and road shapes, no model needed.

* sceneseg: ``vectorize_scene`` (polygons per chunk, exact stitching across chunks, building clean-up and
  regularization, speck removal, road centerlines) then ``publish_scene`` (atomic GeoPackage write with
  the scenes layer).
* baseline: ``rasterio.features.shapes`` over the whole mask in one call, then
  ``GeoDataFrame.to_file(engine="pyogrio")`` to a GeoPackage. It does no stitching, cleaning or
  centerlines, and holds the whole mask at once.

Polygons per second count the polygons each one writes (sceneseg: buildings + roads; centerlines are
reported beside). The ratio is sceneseg's rate over the baseline's, measured in the same run. sceneseg
is timed after a first call on a tiny mask, whose time (the JIT compiles every new process pays once)
is reported beside.

    python bench/vectorize.py                 # 8192 x 8192
    python bench/vectorize.py --quick         # 1024 x 1024, not recorded
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from datetime import UTC, datetime

import common
import numpy as np

from pipeline.config import DEFAULTS
from pipeline.grid import GeoGrid, Region, Shape2d
from pipeline.vectors import VectorSettings, vectorize_scene
from pipeline.vectors.gpkg import SceneRecord, publish_scene
from pipeline.vectors.labels import rasterize_layers

QUICK_SIZE = 1024


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=8192, help="Side of the synthetic scene in pixels.")
    parser.add_argument("--chunk-size", type=int, default=DEFAULTS["vector_chunk_size"], help="sceneseg vector chunk side in pixels.")
    common.add_common_args(parser)
    args = parser.parse_args(argv)
    if args.quick:
        args.size = min(args.size, QUICK_SIZE)
    return args


def run_baseline(mask: np.ndarray, transform, crs, path) -> tuple[float, int]:
    """Seconds and polygon count of shapes() over the whole mask and one pyogrio write."""
    import geopandas as gpd
    import rasterio.features
    import shapely.geometry

    started = time.perf_counter()
    geoms, values = [], []
    for geom, value in rasterio.features.shapes(mask, mask=mask > 0, connectivity=4, transform=transform):
        geoms.append(shapely.geometry.shape(geom))
        values.append(int(value))
    frame = gpd.GeoDataFrame({"class_id": np.asarray(values, dtype=np.uint8)}, geometry=geoms, crs=crs)
    frame.to_file(path, layer="polygons", driver="GPKG", engine="pyogrio")
    return time.perf_counter() - started, len(frame)


def run_sceneseg(mask: np.ndarray, scene, path, chunk_size: int) -> tuple[dict[str, float], dict[str, int]]:
    """Stage seconds and feature counts of vectorize_scene + publish_scene."""
    import shapely


    confidence = np.full(mask.shape, 255, dtype=np.uint8)
    whole = Region.of_shape(scene.shape)

    def read(region: Region) -> tuple[np.ndarray, np.ndarray]:
        rows, cols = region.slices_in(whole)
        return mask[rows, cols], confidence[rows, cols]

    created = datetime.now(UTC).isoformat(timespec="seconds")
    record = SceneRecord(
        scene_id=scene.path.stem, path=str(scene.path), checksum="benchmark", crs=scene.crs,
        footprint=shapely.box(*_bounds(scene)), processed_at=created, model="rasterized-truth",
        run_id="bench",
    )
    settings = VectorSettings(chunk_size=chunk_size)
    classes = {1: "building", 2: "road"}
    started = time.perf_counter()
    layers = vectorize_scene(read, GeoGrid(scene.shape, scene.transform, scene.crs), classes=classes,
                             settings=settings)
    layers = layers.with_attributes(scene_id=record.scene_id, model=record.model, run_id=record.run_id,
                                    created_at=created)
    vectorized = time.perf_counter()
    counts = publish_scene(path, layers, record)
    published = time.perf_counter()
    seconds = {"vectorize": vectorized - started, "publish": published - vectorized,
               "total": published - started}
    return seconds, counts


def warm_up(scene) -> float:
    """Seconds of a first vectorize call on a tiny mask: what a new process pays once (imports, caches)."""

    tiny = np.zeros((64, 64), dtype=np.uint8)
    tiny[30:36, :] = 2
    tiny[5:20, 5:20] = 1
    confidence = np.full(tiny.shape, 255, dtype=np.uint8)

    def read(region):
        rows, cols = slice(region.row, region.row_stop), slice(region.col, region.col_stop)
        return tiny[rows, cols], confidence[rows, cols]

    started = time.perf_counter()
    vectorize_scene(read, GeoGrid(Shape2d(64, 64), scene.transform, scene.crs), classes={1: "building", 2: "road"})
    return time.perf_counter() - started


def _bounds(scene) -> tuple[float, float, float, float]:
    import rasterio.transform

    return rasterio.transform.array_bounds(scene.shape.rows, scene.shape.cols, scene.transform)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    info = common.machine()

    scene = common.synthetic_scene(args.work_dir, args.size, args.seed)
    mask = rasterize_layers(scene.truth_path, GeoGrid(scene.shape, scene.transform, scene.crs))
    out = args.work_dir / f"vectorize-{args.size}"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)

    first_call_s = warm_up(scene)
    print("baseline: rasterio.features.shapes + pyogrio ...", file=sys.stderr)
    base_s, base_n = run_baseline(mask, scene.transform, scene.crs, out / "baseline.gpkg")
    print(f"baseline: {base_n} polygons in {base_s:.1f} s; sceneseg ...", file=sys.stderr)
    seconds, counts = run_sceneseg(mask, scene, out / "sceneseg.gpkg", args.chunk_size)
    polygons = counts["buildings"] + counts["roads"]
    base_rate = base_n / base_s
    rate = polygons / seconds["total"]
    ratio = rate / base_rate
    classes = np.bincount(mask.ravel(), minlength=3)
    output = {
        "benchmark": "vectorize",
        "machine": info,
        "mask": {"scene": str(scene.path), "size": args.size, "seed": args.seed,
                 "building_px": int(classes[1]), "road_px": int(classes[2])},
        "chunk_size": args.chunk_size,
        "baseline": {"seconds": round(base_s, 3), "polygons": base_n, "polygons_per_s": round(base_rate, 1)},
        "sceneseg": {"seconds": {k: round(v, 3) for k, v in seconds.items()}, "counts": counts,
                     "polygons": polygons, "polygons_per_s": round(rate, 1),
                     "first_call_in_process_s": round(first_call_s, 3)},
        "ratio_sceneseg_over_baseline": round(ratio, 4),
        "quick": args.quick,
    }
    key = (f"{args.size}^2 rasterized truth, chunk {args.chunk_size}. Baseline shapes+pyogrio: {base_n} "
           f"polygons in {base_s:.1f} s = {base_rate:.0f}/s; sceneseg vectorize+publish: {polygons} polygons "
           f"({counts['buildings']} buildings, {counts['roads']} roads, {counts['road_centerlines']} "
           f"centerlines) in {seconds['total']:.1f} s (vectorize {seconds['vectorize']:.1f}, publish "
           f"{seconds['publish']:.1f}) = {rate:.0f}/s; **ratio {ratio:.3f}**; once per process before that: "
           f"{first_call_s:.1f} s of first-call warm-up")
    common.finish(args, "vectorize.py", output, key)


if __name__ == "__main__":
    main()
