"""The suite's fixtures: small real GeoTIFFs, a tiny real checkpoint and one Prefect server, in temporary
directories. Plain helpers are in tests/helpers.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import coordinate_image, smooth_image, write_geotiff, write_tiny_checkpoint


@pytest.fixture
def coord_scene(tmp_path: Path) -> Path:
    return write_geotiff(tmp_path / "coords.tif", coordinate_image(157, 203))


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
