"""Shared fixtures: small real GeoTIFFs and a tiny real checkpoint, written to temporary directories."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

# Keep torch from fighting pytest for the two CI cores.
os.environ.setdefault("OMP_NUM_THREADS", "2")

UTM = "EPSG:32645"


def write_geotiff(path: Path, data: np.ndarray, *, crs: str | None = UTM, transform=None, nodata=None) -> Path:
    """Write ``data`` (bands, rows, cols) as a tiled GeoTIFF with a real CRS and transform."""
    bands, rows, cols = data.shape
    transform = transform if transform is not None else from_origin(300000.0, 3000000.0, 0.5, 0.5)
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


@pytest.fixture
def coord_scene(tmp_path: Path) -> Path:
    return write_geotiff(tmp_path / "coords.tif", coordinate_image(157, 203))


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


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    return write_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt")


@pytest.fixture
def smooth_scene(tmp_path: Path) -> Path:
    return write_geotiff(tmp_path / "scene.tif", smooth_image(173, 229))


@pytest.fixture(scope="session")
def prefect_harness():
    """One temporary Prefect server (SQLite) for every flow test of the session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


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
