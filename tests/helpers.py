"""Plain helpers of the tests (no fixtures: those are in conftest.py): small real GeoTIFFs, a tiny real
checkpoint, in-memory chunk readers, the CRS and transform most tests use, and what a test needs to know of
the machine (a PyQGIS, a small real filesystem)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import rasterio
from affine import Affine

from pipeline.grid import Region

if TYPE_CHECKING:  # the vector chunk processes unpickle ArrayReader: this module imports no frame library
    from pipeline.vectors.gpkg import SceneRecord
    from pipeline.vectors.layers import VectorLayers

# Keep torch from fighting pytest for the two CI cores.
os.environ.setdefault("OMP_NUM_THREADS", "2")

#: The repository root.
REPO = Path(__file__).resolve().parents[1]
UTM = "EPSG:32645"
#: 0.5 m pixels in UTM 45N, the transform of most synthetic test scenes.
TRANSFORM = Affine(0.5, 0.0, 300000.0, 0.0, -0.5, 3000000.0)


def write_geotiff(path: Path, data: np.ndarray, *, crs: str | None = UTM, transform=None, nodata=None) -> Path:
    """Write ``data`` (bands, rows, cols) as a tiled GeoTIFF with a real CRS and transform."""
    bands, rows, cols = data.shape
    transform = transform if transform is not None else TRANSFORM
    profile = dict(driver="GTiff", width=cols, height=rows, count=bands, dtype=data.dtype.name,
                   transform=transform, nodata=nodata)
    if crs is not None:
        profile["crs"] = crs
    if rows >= 16 and cols >= 16:
        profile.update(tiled=True, blockxsize=16 * max(1, min(cols, 256) // 16), blockysize=16 * max(1, min(rows, 256) // 16))
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return path


def coordinate_image(rows: int, cols: int) -> np.ndarray:
    """Three bands whose values encode each pixel's (row, col): tiling bugs show as wrong numbers."""
    r, c = np.mgrid[0:rows, 0:cols]
    return np.stack([r, c, r * cols + c]).astype(np.float32)


def smooth_image(rows: int, cols: int, seed: int = 0, bands: int = 3) -> np.ndarray:
    """A uint8 image with structure at several scales (so a random U-Net gives a varied mask)."""
    from scipy.ndimage import gaussian_filter, zoom

    rng = np.random.default_rng(seed)
    out = np.zeros((bands, rows, cols), dtype=np.float64)
    for scale in (4, 16, 48):
        coarse = rng.normal(size=(bands, rows // scale + 2, cols // scale + 2))
        out += zoom(coarse, (1, scale, scale), order=1)[:, :rows, :cols]
    out = gaussian_filter(out, (0, 1, 1))
    out = (out - out.min()) / (out.max() - out.min()) * 255
    return out.astype(np.uint8)


def write_tiny_checkpoint(
    path: Path, classes: tuple[str, ...] = ("background", "building", "road"), seed: int = 0, **card_fields
) -> Path:
    """A real, tiny, untrained U-Net checkpoint (4 base channels, depth 2, 64-pixel tiles) at ``path``.

    ``card_fields`` are further ModelCard fields (gsd_m, separation, ...).
    """
    import torch

    from models import create_model
    from models.checkpoint import ModelCard, save_checkpoint

    torch.manual_seed(seed)
    kwargs = dict(in_channels=3, num_classes=len(classes), base_channels=4, depth=2)
    model = create_model("unet", **kwargs)
    # Sharpen the untrained output layer so the classes are decided, not near-ties.
    head = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)][-1]
    with torch.no_grad():
        head.weight *= 40.0
    card = ModelCard(arch="unet", arch_kwargs=kwargs, classes=list(classes), bands=[1, 2, 3],
                     mean=[128.0] * 3, std=[64.0] * 3, tile_size=64, context_margin=8, **card_fields)
    save_checkpoint(path, model, card)
    return path


@contextmanager
def tmpfs(path: Path, size: str) -> Iterator[bool]:
    """A small real filesystem mounted at ``path`` (made here) for full-disk tests; yields whether it mounted
    (only root may mount), and unmounts it afterwards."""
    path.mkdir()
    mounted = shutil.which("mount") is not None and subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True
    ).returncode == 0
    try:
        yield mounted
    finally:
        if mounted:
            subprocess.run(["umount", str(path)], check=False)


def read_mask(path: Path) -> np.ndarray:
    with rasterio.open(path) as ds:
        return ds.read(1)


def read_features(gpkg: Path, layer: str):
    """A layer's geometries (normalized WKB, sorted) and scores, for comparing two runs."""
    import pyogrio
    import shapely

    frame = pyogrio.read_dataframe(gpkg, layer=layer)
    geoms = sorted(shapely.to_wkb(shapely.normalize(frame.geometry.values)))
    return geoms, sorted(np.round(frame["score"].to_numpy(), 6).tolist())



class ArrayReader:
    """Reads windows of an in-memory mask and confidence, as a scene's chunk reader does; picklable, so a
    vectorizing process can use it. Without ``confidence``, every pixel has ``fill_confidence``."""

    def __init__(self, mask: np.ndarray, confidence: np.ndarray | None = None, fill_confidence: int = 200):
        self.mask = mask
        self.confidence = confidence if confidence is not None else np.full_like(mask, fill_confidence)

    def __call__(self, region: Region) -> tuple[np.ndarray, np.ndarray]:
        rows, cols = region.slices_in(Region(0, 0, *self.mask.shape))
        return self.mask[rows, cols], self.confidence[rows, cols]


def has_pyqgis() -> bool:
    """Whether the system Python has PyQGIS (the QGIS tests run there, skipped without it)."""
    python = shutil.which("python3", path="/usr/bin")
    if python is None:
        return False
    return subprocess.run([python, "-c", "import qgis.core"], capture_output=True, timeout=60).returncode == 0


# A GeoPackage's test data: small layers and scene records near a point, and the features per layer.

#: The layers every published GeoPackage holds.
LAYERS = ("buildings", "roads", "road_centerlines", "scenes")


def scene_layers(x0: float, y0: float, n: int, crs: str = UTM) -> VectorLayers:
    """n buildings, one road and one centerline near (x0, y0)."""
    import geopandas as gpd
    import shapely

    from pipeline.vectors.layers import VectorLayers

    boxes = shapely.box(x0 + np.arange(n) * 20, y0, x0 + np.arange(n) * 20 + 10, y0 + 10)

    def frame(geoms, cls, measure, values):
        return gpd.GeoDataFrame(
            {"class": [cls] * len(geoms), "score": np.full(len(geoms), 0.8), measure: values}, geometry=list(geoms), crs=crs
        )

    road = [shapely.box(x0, y0 - 20, x0 + 20 * n, y0 - 12)]
    line = [shapely.LineString([(x0, y0 - 16), (x0 + 20 * n, y0 - 16)])]
    return VectorLayers(
        frame(boxes, "building", "area_m2", np.full(n, 100.0)),
        frame(road, "road", "area_m2", [160.0 * n]),
        frame(line, "road", "length_m", [20.0 * n]),
    )


def record(scene_id: str, x0: float, y0: float, crs: str = UTM, **kw) -> SceneRecord:
    """A scene's row of the scenes layer, its footprint around (x0, y0)."""
    import shapely

    from pipeline.vectors.gpkg import SceneRecord

    return SceneRecord(
        scene_id=scene_id, path=f"/data/{scene_id}.tif", checksum=f"sha256:{scene_id}", crs=crs,
        footprint=shapely.box(x0 - 50, y0 - 50, x0 + 500, y0 + 50), processed_at="2026-05-01T02:00:00+00:00",
        model="unet@1234abcd", run_id="run-1", **kw,
    )  # fmt: skip


def counts(path: Path) -> dict[str, int]:
    """Features per layer, read with every warning an error."""
    import warnings

    import pyogrio

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return {name: pyogrio.read_info(path, layer=name)["features"] for name in LAYERS}


@contextmanager
def loopback_server(handler: type) -> Iterator[str]:
    """An HTTP server of ``handler`` on a free loopback port for the ``with`` block; yields its base URL."""
    import http.server
    import threading

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()

