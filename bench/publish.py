"""Publishing one scene to a GeoPackage that already holds 1 or N scenes: the cost must not grow with N.

Each scene has ``--features`` buildings (plus one road and one centerline). The GeoPackage is filled with
N scenes first; then one more scene is published (and republished, replacing its rows) and timed.
Publishing works in place in one SQLite transaction (``pipeline.vectors.gpkg``), so the time should be
the same for 1 and for N scenes.

    python bench/publish.py                  # 1 and 500 scenes of 1000 buildings
    python bench/publish.py --quick          # 1 and 20 scenes, not recorded
"""

from __future__ import annotations

import argparse
import shutil
import time

import common
import geopandas as gpd
import numpy as np
import shapely

from pipeline.vectors.gpkg import SceneRecord, publish_scene
from pipeline.vectors.layers import VectorLayers

UTM = "EPSG:32645"


def scene(i: int, n: int) -> tuple[VectorLayers, SceneRecord]:
    x0, y0 = 300000.0 + (i % 50) * 2000.0, 3000000.0 + (i // 50) * 2000.0
    x = x0 + np.arange(n) % 40 * 40.0
    y = y0 + np.arange(n) // 40 * 40.0

    def frame(geoms, measure):
        return gpd.GeoDataFrame({"class": ["building"] * len(geoms), "score": np.full(len(geoms), 0.9),
                                 measure: np.full(len(geoms), 100.0)}, geometry=list(geoms), crs=UTM)

    layers = VectorLayers(frame(shapely.box(x, y, x + 10, y + 10), "area_m2"),
                          frame([shapely.box(x0, y0 - 20, x0 + 1600, y0 - 12)], "area_m2"),
                          frame([shapely.LineString([(x0, y0 - 16), (x0 + 1600, y0 - 16)])], "length_m"))
    record = SceneRecord(scene_id=f"scene-{i:04d}", path=f"/data/scene-{i:04d}.tif", checksum="0" * 64, crs=UTM,
                         footprint=shapely.box(x0, y0, x0 + 1600, y0 + 1600), processed_at="2026-12-01T00:00:00+00:00",
                         model="bench", run_id="bench")
    return layers, record


def timed_publish(path, i: int, n: int, repeats: int) -> float:
    layers, record = scene(i, n)
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        publish_scene(path, layers, record)
        best = min(best, time.perf_counter() - started)
    return best


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_common_args(parser)
    parser.add_argument("--scenes", type=int, default=500, help="Scenes in the GeoPackage for the large case.")
    parser.add_argument("--features", type=int, default=1000, help="Buildings per scene.")
    parser.add_argument("--repeats", type=int, default=3, help="Publishes timed per case (the best counts).")
    args = parser.parse_args(argv)
    many = 20 if args.quick else args.scenes
    out = args.work_dir / "publish"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    result = {"machine": common.machine(), "features_per_scene": args.features}
    for label, filled in (("1", 1), (str(many), many)):
        path = out / f"filled-{filled}.gpkg"
        started = time.perf_counter()
        for i in range(filled):
            layers, record = scene(i, args.features)
            publish_scene(path, layers, record)
        result[f"fill_{label}_s"] = round(time.perf_counter() - started, 2)
        result[f"publish_with_{label}_s"] = round(timed_publish(path, filled, args.features, args.repeats), 3)
        result[f"gpkg_{label}_mib"] = round(path.stat().st_size / 2**20, 1)
    key = (f"publish of a {args.features}-building scene: {result['publish_with_1_s']} s with 1 scene in the file, "
           f"{result[f'publish_with_{many}_s']} s with {many} ({result[f'gpkg_{many}_mib']} MiB)")
    common.finish(args, "publish.py", result, key)


if __name__ == "__main__":
    main()
