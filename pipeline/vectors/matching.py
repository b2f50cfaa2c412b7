"""One-to-one matching of two sets of polygons by IoU, the SpaceNet rule: scores and the change layer use it."""

from __future__ import annotations

import numpy as np
import shapely

__all__ = ["match_by_iou"]


def match_by_iou(a: np.ndarray, b: np.ndarray, min_iou: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs of ``a`` and ``b`` (arrays of polygons) matched one to one, highest IoU first, each IoU >= ``min_iou``.

    Returns the indices into ``a``, the indices into ``b`` and the IoUs of the matched pairs. Equal IoUs keep
    index order (a stable sort), so the result is deterministic.
    """
    empty = np.empty(0, dtype=np.int64)
    if a.size == 0 or b.size == 0:
        return empty, empty, np.empty(0)
    ai, bi = shapely.STRtree(b).query(a, predicate="intersects")
    inter = shapely.area(shapely.intersection(a[ai], b[bi]))
    union = shapely.area(a)[ai] + shapely.area(b)[bi] - inter
    iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    keep = iou >= min_iou
    ai, bi, iou = ai[keep], bi[keep], iou[keep]
    used_a, used_b = np.zeros(a.size, dtype=bool), np.zeros(b.size, dtype=bool)
    chosen = []
    for k in np.argsort(-iou, kind="stable"):
        if not used_a[ai[k]] and not used_b[bi[k]]:
            used_a[ai[k]] = used_b[bi[k]] = True
            chosen.append(k)
    chosen = np.asarray(chosen, dtype=np.int64)
    return ai[chosen], bi[chosen], iou[chosen]
