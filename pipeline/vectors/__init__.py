"""The vector stage: a scene's mask into building and road polygons and road centerlines.

Pure geometry: ``polygonize`` (chunks polygonized in pixel space and stitched exactly), ``polygons``
(footprint clean-up and regularization on the ground), ``centerlines`` (road skeletons). Per scene:
``assemble`` (a scene's chunk work and its finish into layers) and ``stream`` (the scheduler that runs chunk
work while inference still writes the mask). ``layers`` is the one layer schema; ``gpkg`` writes it.
``changes`` compares two published scenes into the ``building_changes`` layer.
"""

from pipeline.vectors.assemble import ChunkVectors, SceneVectorizer, VectorSettings, vectorize_scene
from pipeline.vectors.layers import VectorLayers
from pipeline.vectors.polygonize import chunk_regions, polygonize_chunk, stitch
from pipeline.vectors.stream import ChunkStream

__all__ = [
    "VectorSettings",
    "VectorLayers",
    "SceneVectorizer",
    "ChunkVectors",
    "ChunkStream",
    "vectorize_scene",
    "chunk_regions",
    "polygonize_chunk",
    "stitch",
]
