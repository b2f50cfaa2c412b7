"""What a segment-scene flow run leaves in Prefect and tells its caller: a preview artifact small enough for
the Prefect database and its event bus, and block progress for the command line's progress bar."""

from __future__ import annotations

import base64
import re

import numpy as np
import pytest
from rasterio.io import MemoryFile

from flows.segment import THUMBNAIL_MAX_BYTES, reporting_progress, segment_scene_flow
from pipeline.config import SegmentConfig
from tests.helpers import write_geotiff, write_tiny_checkpoint

pytestmark = pytest.mark.usefixtures("prefect_harness")


def _artifact(key: str) -> str:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        (found,) = client.read_latest_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))
    return found.data


def _background_only_checkpoint(path):
    """A real checkpoint whose output layer says background everywhere: a noise scene gives no polygons."""
    import torch

    from models.checkpoint import load_checkpoint, save_checkpoint

    write_tiny_checkpoint(path)
    loaded = load_checkpoint(path)
    head = [m for m in loaded.model.modules() if isinstance(m, torch.nn.Conv2d)][-1]
    with torch.no_grad():
        head.weight.zero_()
        head.bias.copy_(torch.tensor([10.0, 0.0, 0.0]))
    save_checkpoint(path, loaded.model, loaded.card)
    return path


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_preview_artifact_embeds_a_small_thumbnail_and_names_the_full_png(tmp_path):
    # Noise does not compress: the 1024-pixel quick-look of this scene is about 3 MB as PNG.
    noise = np.random.default_rng(0).integers(0, 256, size=(3, 1100, 1100), dtype=np.uint8)
    scene = write_geotiff(tmp_path / "noisy.tif", noise)
    model = _background_only_checkpoint(tmp_path / "background.pt")
    seen: list[tuple[int, int]] = []
    with reporting_progress(lambda done, total: seen.append((done, total))):
        summary = segment_scene_flow(str(scene), str(tmp_path / "out"),
                                SegmentConfig(model=str(model), block_size=512, precision="fp32"))
    preview = tmp_path / "out" / "noisy_preview.png"
    assert preview.stat().st_size > 1_000_000, "the full quick-look is large: what the artifact must not embed"

    markdown = _artifact("preview-noisy")
    assert len(markdown.encode()) < 50_000, len(markdown.encode())
    assert str(preview) in markdown
    (data,) = re.findall(r"\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)", markdown)
    png = base64.b64decode(data)
    assert len(png) <= THUMBNAIL_MAX_BYTES
    with MemoryFile(png) as mem, mem.open() as thumb:
        assert thumb.count == 3 and 0 < max(thumb.width, thumb.height) <= 256

    # The progress listener heard of every block, in order, up to the last.
    blocks = summary["blocks"]
    assert blocks > 1 and seen[-1] == (blocks, blocks)
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)
