"""A forward pass that costs nothing: the synthetic scene's truth replayed as class probabilities.

For measuring the CPU side of the pipeline alone (reads, tiling, blending, COG writing, vectors) with
realistic content: a scene written by ``pipeline.synthetic`` is copied with its truth class (0 background,
1 building, 2 road) in the two low bits of its first band (:func:`encode_truth`, at most 3 DN of change,
so reads decode about as much as the original scene's), and :class:`ReplayPredictor` turns each tile back
into probabilities with a few numpy operations per pixel instead of a network's tens of kFLOP. Everything
else is the pipeline's own code: :func:`free_forward` only swaps the predictor the block workers get.

Bench-only: nothing in ``pipeline/`` or the CLI knows about it. From the command line,
``python bench/free_forward.py segment SCENE OUT [sceneseg segment options]`` runs ``sceneseg segment``
with it (the in-process Dask workers then use it; a remote ``--dask-address`` would not).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from pipeline.raster.infer import CPU_BATCH_SIZE, InferenceSettings, Normalization  # noqa: E402

__all__ = ["CODE_BITS", "WIN_PROBABILITY", "encode_truth", "truth_probabilities", "ReplayPredictor", "free_forward"]

#: The low bits of band 1 that carry the truth class.
CODE_BITS = 3
#: Probability of the true class (the rest shared by the others): 200.2 when scaled to 0..255, far from a
#: rounding edge, so the confidence raster is the same whatever float error blending leaves.
WIN_PROBABILITY = 200.2 / 255


def truth_probabilities(codes: np.ndarray, num_classes: int) -> np.ndarray:
    """Probabilities ``(classes, ...)`` float32 of truth codes (a code that names no class is background)."""
    codes = np.where(codes < num_classes, codes, 0)
    other = (1.0 - WIN_PROBABILITY) / (num_classes - 1)
    probs = np.full((num_classes, *codes.shape), other, dtype=np.float32)
    for k in range(num_classes):
        probs[k][codes == k] = WIN_PROBABILITY
    return probs


def encode_truth(scene_path: Path, truth_gpkg: Path, out_path: Path, *, window: int = 2048) -> Path:
    """Copy a synthetic scene with its truth class in the low bits of band 1 (buildings over roads).

    Written window by window under a temporary name and renamed into place, so a file that exists is whole.
    """
    import pyogrio
    import rasterio
    import shapely
    from rasterio.features import rasterize
    from rasterio.windows import Window
    from rasterio.windows import transform as window_transform

    layers = {name: pyogrio.read_dataframe(truth_gpkg, layer=name).geometry.values for name in ("roads", "buildings")}
    trees = {name: shapely.STRtree(geoms) for name, geoms in layers.items()}
    tmp = out_path.with_name(f".{out_path.name}.tmp.tif")
    with rasterio.open(scene_path) as src:
        profile = src.profile
        with rasterio.open(tmp, "w", **profile) as dst:
            for row in range(0, src.height, window):
                for col in range(0, src.width, window):
                    win = Window(col, row, min(window, src.width - col), min(window, src.height - row))
                    data = src.read(window=win)
                    t = window_transform(win, src.transform)
                    box = shapely.box(*rasterio.windows.bounds(win, src.transform))
                    shapes = []
                    for value, name in ((2, "roads"), (1, "buildings")):
                        hits = trees[name].query(box, predicate="intersects")
                        # Clipped first: a road network's polygon is as large as the scene.
                        shapes += [(g, value) for g in shapely.clip_by_rect(layers[name][hits], *box.bounds)
                                   if not g.is_empty]
                    codes = (rasterize(shapes, out_shape=(int(win.height), int(win.width)), transform=t, fill=0,
                                       dtype="uint8") if shapes else np.zeros((int(win.height), int(win.width)), np.uint8))
                    data[0] = (data[0] & ~np.uint8(CODE_BITS)) | codes
                    dst.write(data, window=win)
    tmp.replace(out_path)
    return out_path


class ReplayPredictor:
    """Stands in for ``pipeline.raster.infer.Predictor``: probabilities decoded from tiles of an encoded scene."""

    def __init__(self, num_classes: int, settings: InferenceSettings):
        self.num_classes = num_classes
        self.settings = settings
        self.batch_size = settings.batch_size or CPU_BATCH_SIZE
        #: As the Predictor reports it (BlockOutput.precision): no model runs, nothing is cast.
        self.precision = ("fp32", "free forward: the truth replayed, no model")

    def predict_batches(
        self, tiles: np.ndarray | Sequence[np.ndarray], normalization: Normalization | None = None,
        valid: Sequence[np.ndarray | None] | None = None,
    ) -> Iterator[np.ndarray]:
        """Probabilities ``(n, classes, T, T)`` of each batch of raw tiles, as the Predictor's (its batches too).

        The tiles must be the scene's own values with their ``normalization`` beside them, as the block
        workers pass them: normalized tiles no longer hold the code bits exactly. ``valid`` is ignored: the
        synthetic town has no nodata.
        """
        if normalization is None:
            raise ValueError("ReplayPredictor decodes raw tiles: pass them with their normalization")
        for start in range(0, len(tiles), self.batch_size):
            batch = tiles[start : start + self.batch_size]
            codes = np.stack([np.asarray(tile[0]) for tile in batch]).astype(np.int64) & CODE_BITS
            yield np.moveaxis(truth_probabilities(codes, self.num_classes), 0, 1)


@contextmanager
def free_forward() -> Iterator[None]:
    """Within this block, the pipeline's block workers (in this process) run :class:`ReplayPredictor`."""
    from models.checkpoint import load_checkpoint
    from pipeline.raster import blocks

    real = blocks.get_predictor
    predictors: dict[tuple[str, InferenceSettings], ReplayPredictor] = {}

    def get_predictor(checkpoint: str | Path, settings: InferenceSettings) -> ReplayPredictor:
        key = (str(checkpoint), settings)
        if key not in predictors:
            predictors[key] = ReplayPredictor(len(load_checkpoint(checkpoint).card.classes), settings)
        return predictors[key]

    blocks.get_predictor = get_predictor
    try:
        yield
    finally:
        blocks.get_predictor = real


def main(argv: list[str]) -> None:
    """``segment SCENE OUT [options]``: ``sceneseg segment`` with the free forward."""
    from flows.cli import app

    with free_forward():
        app(argv, prog_name="sceneseg")


if __name__ == "__main__":
    main(sys.argv[1:])
