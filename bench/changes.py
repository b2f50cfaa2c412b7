"""The cost of comparing two published acquisitions (``pipeline.vectors.changes``), per 1,000 buildings.

Two scenes are published into one GeoPackage from the ground truth of a synthetic town (no model needed:
the comparison does not care where the footprints came from): the earlier one as drawn, the later one
misregistered by 1.5 px (0.75 m each way), with 2 % of the buildings removed and 1 % added, and masks
beside them with nodata corners, as a rotated acquisition has (the edits are all inside the area both
hold, so the expected counts are exact). Timed: ``update_changes`` of the later scene (its chunk grid,
reading the buildings, centerlines and mask windows around each chunk, the valid area, the alignment,
the matching, the staging and the one transaction) in a fresh process, at each size, with that
process's peak resident memory (imports included).

    python bench/changes.py                  # 4096^2 and 8192^2 scenes
    python bench/changes.py --quick          # 1024^2, not recorded
    python bench/changes.py --picture bench/changes-overlay.png --no-record   # the README's picture
    python bench/changes.py --towns 3 4 5 6 11 --shifts 1.5 2.5 3 --sizes      # unchanged, misregistered towns

``--picture`` also runs the pipeline as a user does: a 512^2 synthetic town and a later acquisition of it
with 5 buildings painted over and 3 added (``write_changed_scene``), both segmented by ``synthetic-demo``
into one GeoPackage, the change layer drawn over them (earlier | later; removed red, new green, changed
amber, as its QGIS style draws them).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import common
import geopandas as gpd
import numpy as np
import pyogrio
import rasterio
import rasterio.features
import rasterio.transform
import rasterio.warp
import shapely
import shapely.affinity
from affine import Affine

from pipeline.config import SegmentConfig
from pipeline.metrics import match_buildings
from pipeline.outputs.preview import encode_png
from pipeline.stages import segment_scene
from pipeline.synthetic import write_changed_scene, write_synthetic_scene
from pipeline.vectors.changes import CHANGES_LAYER, ChangeSettings
from pipeline.vectors.gpkg import SceneRecord, publish_scene
from pipeline.vectors.layers import VectorLayers

QUICK_SIZE = 1024
SHIFT_M = 0.75


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[4096, 8192],
                        help="Scene sides in pixels (none: only --towns or --picture).")
    parser.add_argument("--chunk-px", type=int, default=ChangeSettings().chunk_px, help="Comparison chunk side.")
    parser.add_argument("--picture", type=Path, default=None,
                        help="Also segment a changed synthetic town and draw its change layer into this PNG.")
    parser.add_argument("--towns", type=int, nargs="*", default=[],
                        help="Also segment these seeds' 512^2 towns and misregistered copies (--shifts px) and "
                             "compare them: an unchanged town must give no change.")
    parser.add_argument("--shifts", type=float, nargs="+", default=[1.5, 2.5], help="Misregistrations in pixels.")
    common.add_common_args(parser)
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes = [QUICK_SIZE]
    return args


def _layers(truth, keep: np.ndarray, extra: list, dx: float, dy: float) -> VectorLayers:
    """The truth's layers with the buildings ``keep`` selects plus ``extra``, moved by (dx, dy)."""
    crs = truth["buildings"].crs

    def moved(geoms):
        return shapely.transform(np.asarray(list(geoms), dtype=object), lambda xy: xy + [dx, dy])

    buildings = moved([*truth["buildings"].geometry.values[keep], *extra])
    lines = moved(truth["road_centerlines"].geometry.values)
    roads = moved(truth["roads"].geometry.values)
    frame = gpd.GeoDataFrame
    return VectorLayers(
        frame({"class": "building", "score": 0.9, "area_m2": shapely.area(buildings)}, geometry=list(buildings), crs=crs),
        frame({"class": "road", "score": 0.9, "area_m2": shapely.area(roads)}, geometry=list(roads), crs=crs),
        frame({"class": "road", "score": 0.9, "length_m": shapely.length(lines)}, geometry=list(lines), crs=crs),
    )


def _valid_area(scene) -> shapely.Geometry:
    """The scene's outline less the corners :func:`_mask` makes nodata."""
    rows, cols = scene.shape.rows, scene.shape.cols
    t = scene.transform
    corners = [shapely.Polygon([t * (0, 0), t * (cols // 6, 0), t * (0, cols // 6)]),
               shapely.Polygon([t * (cols, rows), t * (cols - cols // 6, rows), t * (cols, rows - cols // 6)])]
    outline = shapely.box(*rasterio.transform.array_bounds(rows, cols, t))
    return shapely.difference(outline, shapely.union_all(corners))


def _mask(path, scene) -> None:
    """A mask whose top-left and bottom-right corners are nodata (255), like a rotated acquisition's."""
    rows, cols = scene.shape.rows, scene.shape.cols
    profile = dict(driver="GTiff", width=cols, height=rows, count=1, dtype="uint8", crs=scene.crs,
                   transform=scene.transform, nodata=255, tiled=True, blockxsize=512, blockysize=512,
                   compress="deflate")
    with rasterio.open(path, "w", **profile) as ds:
        for r0 in range(0, rows, 512):
            r, c = np.mgrid[r0:min(r0 + 512, rows), 0:cols]
            corner = (r + c < cols // 6) | (r + c > rows + cols - cols // 6)
            ds.write(np.where(corner, 255, 0).astype(np.uint8)[None], window=((r0, r0 + r.shape[0]), (0, cols)))


def run(size: int, args: argparse.Namespace) -> dict:
    scene = common.synthetic_scene(args.work_dir, size, args.seed)
    truth = {name: pyogrio.read_dataframe(scene.truth_path, layer=name)
             for name in ("buildings", "roads", "road_centerlines")}
    bounds = shapely.box(*rasterio.transform.array_bounds(scene.shape.rows, scene.shape.cols, scene.transform))
    out = args.work_dir / f"changes-{size}"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    gpkg = out / "sceneseg.gpkg"
    n = len(truth["buildings"])
    rng = np.random.default_rng(args.seed)
    # Edits only where both masks are valid, away from the nodata corners and the edges: all of them count.
    interior = shapely.buffer(_valid_area(scene), -10.0)
    geoms = truth["buildings"].geometry.values
    keep = ~((rng.random(n) < 0.02) & shapely.within(geoms, interior))
    # New buildings: copies of buildings moved 40 m east where that lands on empty ground.
    others = shapely.STRtree(geoms)
    extra = []
    for g in geoms[rng.permutation(n)]:
        moved = shapely.affinity.translate(g, 40.0, 0.0)
        if len(extra) >= n // 100:
            break
        if not others.query(shapely.buffer(moved, 5.0)).size and moved.within(interior) and not any(
                moved.distance(e) < 5.0 for e in extra):
            extra.append(moved)
    for scene_id, layers, processed in (
        ("earlier", _layers(truth, np.ones(n, bool), [], 0, 0), "2026-05-01T00:00:00+00:00"),
        ("later", _layers(truth, keep, extra, SHIFT_M, -SHIFT_M), "2026-06-01T00:00:00+00:00"),
    ):
        _mask(out / f"{scene_id}_mask.tif", scene)
        record = SceneRecord(scene_id=scene_id, path=str(out / "gone.tif"), checksum="", crs=scene.crs,
                             footprint=bounds,
                             processed_at=processed, model="truth", run_id="bench")
        publish_scene(gpkg, layers, record)
    # The comparison alone, in a fresh process (as the stage runs in a nightly one): its time and peak memory.
    code = ("import json, sys, time; from pipeline.vectors.changes import ChangeSettings, update_changes; "
            "t = time.perf_counter(); [p] = update_changes(sys.argv[1], 'later', "
            "settings=ChangeSettings(chunk_px=int(sys.argv[2]))); p['wall_s'] = time.perf_counter() - t; "
            "print(json.dumps(p))")
    child = subprocess.Popen([sys.executable, "-c", code, str(gpkg), str(args.chunk_px)], stdout=subprocess.PIPE,
                             text=True, env=common.child_env())
    with common.TreeMemorySampler(child.pid, interval=0.02) as memory:
        stdout, _ = child.communicate()
    if child.returncode != 0:
        raise SystemExit(f"the comparison failed (exit {child.returncode})")
    pair = json.loads(stdout)
    seconds = pair["wall_s"]
    expected = {"removed": int((~keep).sum()), "new": len(extra)}
    return {
        "size": size, "buildings_earlier": n, "buildings_later": int(keep.sum()) + len(extra),
        "expected": expected, "found": {k: pair[k] for k in ("new", "removed", "changed")},
        "road_added_m": pair["road_added_m"], "road_removed_m": pair["road_removed_m"],
        "shift_found_m": pair["shift_m"], "chunks": pair["chunks"], "seconds": round(seconds, 3),
        "seconds_per_1000_buildings": round(seconds / (n / 1000), 3),
        "peak_rss_mib": round(memory.peak_rss / 2**20, 1),
    }


#: Fill and outline colours of the change kinds, as in pipeline/vectors/qgis/building_changes.qml.
COLOURS = {"new": (51, 160, 44), "removed": (227, 26, 28), "changed": (255, 176, 0)}


def _draw(tif: Path, changes: gpd.GeoDataFrame) -> np.ndarray:
    """The scene's RGB with the changes filled (alpha 0.45) and outlined in their colours."""
    with rasterio.open(tif) as ds:
        rgb, transform = ds.read([1, 2, 3]).astype(np.float32), ds.transform
    for kind, colour in COLOURS.items():
        geoms = [g for g in changes.geometry[changes["change"] == kind] if g is not None]
        if not geoms:
            continue
        fill = rasterio.features.rasterize(geoms, out_shape=rgb.shape[1:], transform=transform) > 0
        edge = rasterio.features.rasterize([g.boundary.buffer(0.5) for g in geoms], out_shape=rgb.shape[1:],
                                           transform=transform) > 0
        for band, value in zip(rgb, colour, strict=True):
            band[fill] = 0.55 * band[fill] + 0.45 * value
            band[edge] = value
    return np.clip(rgb, 0, 255).astype(np.uint8)


def picture(path: Path, args: argparse.Namespace) -> dict:
    """Segment a synthetic town and a changed copy of it, compare them, and draw the change layer."""
    work = args.work_dir / "changes-picture"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    town = write_synthetic_scene(work / "town.tif", 512, 512, seed=5)
    later = write_changed_scene(town.path, work / "town-later.tif", remove=5, add=3)
    config = SegmentConfig(model=common.DEMO_MODEL, precision="fp32", overwrite=True)
    segment_scene(town.path, work, config)
    result = segment_scene(later.path, work, config).changes
    changes = pyogrio.read_dataframe(work / "sceneseg.gpkg", layer=CHANGES_LAYER)
    earlier, now = _draw(town.path, changes[changes["change"] == "removed"]), _draw(later.path, changes)
    gap = np.full((3, earlier.shape[1], 8), 255, dtype=np.uint8)
    # Only the rows the changes span (and 12 px round them): the README's picture stays under 300 KB.
    rows, _ = rasterio.transform.rowcol(town.transform, [0, 0], changes.total_bounds[[3, 1]])
    top, bottom = max(min(rows) - 12, 0), min(max(rows) + 12, earlier.shape[1])
    both = np.concatenate([earlier, gap, now], axis=2)[:, top:bottom]
    path.write_bytes(encode_png(np.moveaxis(both, 0, -1)))
    return {"picture": str(path), "png_kib": round(path.stat().st_size / 1024, 1),
            "found": {k: result[k] for k in ("new", "removed", "changed")}}


def _shifted(src: Path, dst: Path, pixels: float) -> Path:
    """The scene resampled (bilinear) with its content moved by ``pixels`` along both axes, on the same grid:
    a misregistered later acquisition; the pixels with no source are nodata."""
    with rasterio.open(src) as ds:
        profile, data = ds.profile | {"nodata": 0}, ds.read()
        out = np.zeros_like(data)
        rasterio.warp.reproject(data, out, src_transform=ds.transform, src_crs=ds.crs, dst_crs=ds.crs,
                                dst_transform=ds.transform @ Affine.translation(pixels, pixels),
                                resampling=rasterio.warp.Resampling.bilinear, dst_nodata=0)
    with rasterio.open(dst, "w", **profile) as ds:
        ds.write(out)
    return dst


def unchanged_towns(args: argparse.Namespace) -> list[dict]:
    """Each seed's town and its misregistered copies, segmented and compared: the changes found (none is
    right), the shift found, and the mean IoU of the matched buildings before and after the alignment."""
    out = []
    config = SegmentConfig(model=common.DEMO_MODEL, precision="fp32", overwrite=True)
    for seed, pixels in ((seed, pixels) for seed in args.towns for pixels in args.shifts):
        work = args.work_dir / f"changes-town-{seed}-{pixels}"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        town = write_synthetic_scene(work / "town.tif", 512, 512, seed=seed)
        segment_scene(town.path, work, config)
        [pair] = segment_scene(_shifted(town.path, work / "later.tif", pixels), work, config).changes["pairs"]
        buildings = pyogrio.read_dataframe(work / "sceneseg.gpkg", layer="buildings")
        earlier, later = (buildings[buildings["scene_id"] == s] for s in ("town", "later"))
        moved = earlier.translate(*pair["shift_m"])
        out.append({
            "seed": seed, "shift_px": pixels, "buildings": [len(earlier), len(later)],
            "found": {k: pair[k] for k in ("new", "removed", "changed")}, "shift_found_m": pair["shift_m"],
            "mean_iou_before": round(match_buildings(later, earlier, 0.01).mean_iou_matched, 3),
            "mean_iou_aligned": round(match_buildings(later, moved, 0.01).mean_iou_matched, 3),
            "road_added_m": pair["road_added_m"], "road_removed_m": pair["road_removed_m"],
        })
        print(f"town {seed}, {pixels} px: {out[-1]}", file=sys.stderr)
    return out


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    result = {"machine": common.machine(), "chunk_px": args.chunk_px, "runs": []}
    if args.picture is not None:
        result["picture"] = picture(args.picture, args)
    if args.towns:
        result["unchanged_towns"] = unchanged_towns(args)
    for size in args.sizes:
        print(f"{size}^2: publishing two scenes and comparing them", file=sys.stderr)
        result["runs"].append(run(size, args))
    parts = [
        f"{r['size']}^2: {r['buildings_earlier']} buildings, {r['seconds']} s ({r['seconds_per_1000_buildings']} s "
        f"per 1,000), {r['chunks']} chunks, found {r['found']['removed']}/{r['expected']['removed']} removed "
        f"{r['found']['new']}/{r['expected']['new']} new {r['found']['changed']} changed, peak RSS of the "
        f"comparing process {r['peak_rss_mib']} MiB"
        for r in result["runs"]
    ]
    if args.towns:
        towns = result["unchanged_towns"]
        parts.append(f"{len(towns)} unchanged towns misregistered by {'/'.join(map(str, args.shifts))} px: "
                f"{sum(sum(t['found'].values()) for t in towns)} changes found, mean IoU "
                f"{min(t['mean_iou_before'] for t in towns)}-{max(t['mean_iou_before'] for t in towns)} before the "
                f"alignment, {min(t['mean_iou_aligned'] for t in towns)}-{max(t['mean_iou_aligned'] for t in towns)} "
                "after")
    common.finish(args, "changes.py", result, "; ".join(parts))


if __name__ == "__main__":
    main()
