"""A scene's finished buildings staged on disk until they are published: memory flat with content.

Each vector chunk finishes the buildings that lie wholly inside it, most of a scene's. Held as shapely
objects until the scene was published, they made the stage's memory grow with the number of buildings
(hundreds of bytes to kilobytes each, several copies on the way into the GeoPackage). A
:class:`BuildingSpool` appends their WKB to one file in the scene's working directory as each chunk
arrives and keeps in memory only what the layer's order needs: sort keys, score and file offsets, 64 bytes a
building. :meth:`BuildingSpool.layer` gives the buildings layer as :class:`~pipeline.vectors.layers.LayerBatches`
in the scene's key order (the order the in-memory path has, whatever the chunking), which the GeoPackage
writer appends batch by batch.

Why a WKB file with offsets and not a GeoPackage or FlatGeobuf through pyogrio: the layer must come out in
sort-key order, which needs random access by feature. Here that is a slice of a memory map and one
``shapely.from_wkb`` per batch, exact to the bit, with no driver, SQL sort or second schema in between; the
file lives and dies with the working directory.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import shapely

from pipeline.errors import OutputError
from pipeline.vectors.layers import LayerBatches
from pipeline.vectors.polygonize import key_order

if TYPE_CHECKING:
    import geopandas as gpd

__all__ = ["BuildingSpool", "BATCH_FEATURES"]

#: Features per batch read back from the spool (about 25-50 MB of polygons at once).
BATCH_FEATURES = 50_000

#: Builds a layer's frame from geometries (in the CRS) and their scores.
FrameFn = Callable[[np.ndarray, np.ndarray], "gpd.GeoDataFrame"]


class BuildingSpool:
    """Finished buildings of one scene, on disk under ``path``, in parts that may be put again.

    A part is what one chunk (or the stitching) contributes; putting a part again replaces it, so a retried
    chunk or finish never duplicates a building. The file only grows (a replaced part's bytes stay unread);
    it is removed with the working directory.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._parts: dict[object, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = {}
        self._size = 0

    def __len__(self) -> int:
        return sum(len(p[0]) for p in self._parts.values())

    def put(self, part: object, geoms: np.ndarray, scores: np.ndarray, keys: np.ndarray) -> None:
        """Stage ``geoms`` (polygons in the CRS) with their scores and sort keys ``(n, 5)`` as ``part``."""
        if not len(geoms):
            self._parts.pop(part, None)
            return
        blobs = shapely.to_wkb(np.asarray(geoms, dtype=object), output_dimension=2)
        ends = np.cumsum(np.fromiter(map(len, blobs), dtype=np.int64, count=len(blobs)))
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if self._size and (not self.path.exists() or self.path.stat().st_size != self._size):
                raise OSError(f"the file changed size under the spool (expected {self._size} bytes)")
            # The first part truncates: a file left by a killed run of the stage is not ours to append to.
            with self.path.open("ab" if self._size else "wb") as fh:
                fh.write(b"".join(blobs))
        except OSError as exc:
            free = shutil.disk_usage(self.path.parent).free if self.path.parent.exists() else 0
            raise OutputError(
                f"{self.path}: could not stage {len(blobs)} buildings on disk ({exc}; {free / 2**20:.1f} MiB "
                "free there); free space and run the same command again, it resumes"
            ) from exc
        base, self._size = self._size, self._size + int(ends[-1])
        starts = np.concatenate([[0], ends[:-1]]) + base
        keys = np.asarray(keys, dtype=np.float64).reshape(-1, 5)
        self._parts[part] = (keys, np.asarray(scores, dtype=np.float64), starts, ends + base)

    def layer(self, frame: FrameFn, batch_size: int = BATCH_FEATURES) -> LayerBatches:
        """Every staged building in sort-key order, read back in batches built by ``frame``."""
        parts = list(self._parts.values())
        if parts:
            keys, scores, starts, ends = (np.concatenate([p[i] for p in parts]) for i in range(4))
            order = key_order(keys)
            scores, starts, ends = scores[order], starts[order], ends[order]
        else:
            scores, starts, ends = (np.zeros(0), np.zeros(0, np.int64), np.zeros(0, np.int64))
        return LayerBatches(len(scores), _SpoolReader(self.path, scores, starts, ends, frame), batch_size=batch_size)


class _SpoolReader:
    """Rows [start, stop) of a spool's layer (a class, not a closure, so a layer pickles)."""

    def __init__(self, path: Path, scores: np.ndarray, starts: np.ndarray, ends: np.ndarray, frame: FrameFn):
        self.path, self.scores, self.starts, self.ends, self.frame = path, scores, starts, ends, frame

    def __call__(self, start: int, stop: int) -> gpd.GeoDataFrame:
        if stop <= start:
            return self.frame(np.zeros(0, dtype=object), np.zeros(0))
        data = np.memmap(self.path, dtype=np.uint8, mode="r")
        try:
            blobs = [data[s:e].tobytes() for s, e in zip(self.starts[start:stop], self.ends[start:stop])]
        finally:
            del data
        return self.frame(shapely.from_wkb(blobs), self.scores[start:stop])
