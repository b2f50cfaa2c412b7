"""The benchmarks' free forward (bench/free_forward.py): the pipeline with it gives the vectors the real model
path gives on the same probabilities, and its content is the synthetic scene's truth."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import torch

from bench.free_forward import CODE_BITS, ReplayPredictor, encode_truth, free_forward, truth_probabilities
from models.checkpoint import load_checkpoint
from pipeline.config import DEMO_MODEL, SegmentConfig
from pipeline.raster import blocks
from pipeline.raster.infer import InferenceSettings, Predictor
from pipeline.stages import segment_scene
from pipeline.synthetic import write_synthetic_scene
from tests.helpers import read_features, read_mask


class TruthDecoder(torch.nn.Module):
    """A real torch model whose softmax is the free forward's probabilities: the code bits of band 1, undone
    from the normalization the Predictor applies, as logits log(p)."""

    def __init__(self, mean: float, std: float, num_classes: int):
        super().__init__()
        self.mean, self.std, self.num_classes = mean, std, num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raw = torch.round(x[:, 0] * self.std + self.mean).to(torch.int64)
        codes = torch.bitwise_and(raw, CODE_BITS).numpy()
        probs = np.moveaxis(truth_probabilities(codes, self.num_classes), 0, 1)
        return torch.log(torch.from_numpy(probs))


@pytest.fixture(scope="module")
def encoded(tmp_path_factory):
    folder = tmp_path_factory.mktemp("free")
    scene = write_synthetic_scene(folder / "town.tif", 512, 512, seed=5)
    return scene, encode_truth(scene.path, scene.truth_path, folder / "town-encoded.tif")


def test_the_free_forward_gives_the_vectors_of_the_real_model_path_on_the_same_probabilities(
    encoded, tmp_path, monkeypatch
):
    _, scene = encoded
    config = SegmentConfig(model=DEMO_MODEL, block_size=256, precision="fp32")
    with free_forward():
        free = segment_scene(scene, tmp_path / "free", config)
    card = load_checkpoint("synthetic-demo").card
    model = TruthDecoder(card.mean[0], card.std[0], len(card.classes))
    predictor = Predictor(model, card.activation, InferenceSettings(device="cpu", precision="fp32"))
    monkeypatch.setattr(blocks, "get_predictor", lambda checkpoint, settings: predictor)
    real = segment_scene(scene, tmp_path / "real", config)

    assert free.counts["buildings"] > 20 and free.counts["roads"] >= 1 and free.counts["road_centerlines"] >= 1
    np.testing.assert_array_equal(read_mask(free.mask_path), read_mask(real.mask_path))
    for layer in ("buildings", "roads", "road_centerlines"):
        assert read_features(free.gpkg_path, layer) == read_features(real.gpkg_path, layer), layer


def test_the_free_forward_replays_the_truth(encoded, tmp_path):
    original, scene = encoded
    with rasterio.open(original.path) as a, rasterio.open(scene) as b:
        before, after = a.read(), b.read()
    assert np.abs(before.astype(int) - after.astype(int)).max() <= CODE_BITS  # the picture barely changes
    np.testing.assert_array_equal(before[1:], after[1:])
    with free_forward():
        result = segment_scene(scene, tmp_path / "out", SegmentConfig(model=DEMO_MODEL, block_size=256))
    codes = after[0] & CODE_BITS
    mask = read_mask(result.mask_path)
    np.testing.assert_array_equal(mask, codes)
    assert (codes == 1).mean() > 0.02 and (codes == 2).mean() > 0.02


def test_the_replay_predictor_batches_as_the_predictor_does():
    tiles = np.zeros((3, 3, 8, 8), dtype=np.uint8)
    tiles[:, 0, 2:4, 2:4] = 2
    tiles[1, 0, 5, 5] = 1 | 0xF0  # the code is in the low bits only
    predictor = ReplayPredictor(3, InferenceSettings(batch_size=2))
    batches = list(predictor.predict_batches(tiles, normalization=object()))
    assert [b.shape for b in batches] == [(2, 3, 8, 8), (1, 3, 8, 8)]
    probs = np.concatenate(batches)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-6)
    assert probs.argmax(axis=1)[1, 5, 5] == 1 and (probs.argmax(axis=1)[:, 2:4, 2:4] == 2).all()
    with pytest.raises(ValueError, match="raw tiles"):
        list(predictor.predict_batches(tiles))
