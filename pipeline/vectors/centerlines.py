"""Road centerlines: skeletons of the road mask, chunk by chunk, merged into line networks cell by cell.

Each chunk is skeletonized with a halo of context, so that near the chunk's edges its skeleton is the
one the whole image would give; only skeleton pixels in the chunk's core are kept. The core skeleton
becomes its pixel graph (one segment per 8-adjacency, diagonal steps dropped where a 4-neighbour already
joins the two pixels), which GEOS's line merger joins into paths between junctions and ends. A step between
skeleton pixels on either side of a core edge is a *connector*; each of the two chunks draws its half, up to
the step's midpoint on the edge, so no line leaves its chunk's core. Lines are in pixel coordinates
(x = col + 0.5, y = row + 0.5, the pixel centres), so a vertex with an integer coordinate is always such a
cut point. :func:`split_lines` cuts lines the same way at the cells of a
:class:`~pipeline.vectors.polygonize.CellGrid`; :func:`merge_centerlines` joins a cell's pieces through
degree-2 nodes (dropping the cut points inside it, so a connector is the step the whole image gives,
whatever the chunk size) and prunes short spurs; ends on cell lines continue in the next cell and are never
pruned. The caller maps the lines to the ground.

Why not skan: its path graph is built by numba functions that are compiled in every new process (6.7 s
measured, against 0.5 s of actual work on an 8192^2 scene), and ``shapely.line_merge`` does the same
path tracing in C on a graph that numpy builds in a few vectorized steps.
"""

from __future__ import annotations

import math

import numpy as np
import shapely
from scipy import ndimage
from skimage.morphology import skeletonize

from pipeline.grid import Region, Shape2d
from pipeline.vectors.polygonize import CellGrid

__all__ = ["skeleton_lines", "drop_road_specks", "split_lines", "merge_centerlines"]

# Offsets to the neighbours that come later in raster order: each 8-adjacency is seen once.
_FORWARD = ((0, 1), (1, -1), (1, 0), (1, 1))
_EIGHT = np.ones((3, 3), dtype=bool)
_CROSS = ndimage.generate_binary_structure(2, 1)


def _small_components(
    binary: np.ndarray, max_px: int, open_sides: tuple[bool, bool, bool, bool], structure: np.ndarray = _EIGHT
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels (8-connected by default), pixel count per label, and which labels are small: under ``max_px``
    pixels and touching no open side. Sides are (top, bottom, left, right)."""
    labels, n = ndimage.label(binary, structure=structure)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    small = sizes < max_px
    small[0] = False
    for is_open, edge in zip(open_sides, _edges(labels), strict=True):
        if is_open:
            small[edge] = False
    return labels, sizes, small


def _edges(a: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    return a[0], a[-1], a[:, 0], a[:, -1]


def _drop_small(
    binary: np.ndarray, max_px: int, open_sides: tuple[bool, bool, bool, bool], structure: np.ndarray = _EIGHT
) -> np.ndarray:
    """Remove components under ``max_px`` pixels, except those touching an open side.

    An open side is a window edge inside the scene: a component touching it may be larger than the
    window shows, so it is kept and the chunk that sees all of it decides.
    """
    labels, _, small = _small_components(binary, max_px, open_sides, structure)
    return binary & ~small[labels] if small.any() else binary


def _open_sides(window: Region, scene: Shape2d) -> tuple[bool, bool, bool, bool]:
    """Which edges of ``window`` lie inside the scene (top, bottom, left, right)."""
    return window.row > 0, window.row_stop < scene.rows, window.col > 0, window.col_stop < scene.cols


def drop_road_specks(road: np.ndarray, window: Region, scene: Shape2d, min_component_px: int) -> np.ndarray:
    """The road mask of ``window`` without its polygons (4-connected components) under ``min_component_px``.

    The rule the road polygons of the whole image would be filtered by, applied to the pixels before they
    are polygonized and split into cells: a piece of a large road cut off by a cell line is kept, and a speck
    is dropped whichever cells it straddles. A component that reaches a window edge inside the scene is
    kept here (the chunk that sees all of it decides); with a halo wider than the longest speck every
    chunk decides as the whole image would.
    """
    road = np.asarray(road, dtype=bool)
    if min_component_px <= 0 or not road.any():
        return road
    # Labelled over the road's bounding box and a ring of background: no component reaches the box's sides
    # inside the window, so the window's open sides are the box's.
    box = _box(road, 1)
    out = np.zeros_like(road)
    out[box] = _drop_small(road[box], min_component_px, _open_sides(window, scene), _CROSS)
    return out


def _box(binary: np.ndarray, margin: int) -> tuple[slice, slice] | None:
    """The bounding box of ``binary``'s pixels grown by ``margin`` (clipped); None when it has none."""
    rows, cols = np.flatnonzero(binary.any(axis=1)), np.flatnonzero(binary.any(axis=0))
    if len(rows) == 0:
        return None
    return (slice(max(rows[0] - margin, 0), rows[-1] + margin + 1),
            slice(max(cols[0] - margin, 0), cols[-1] + margin + 1))


def _clean_road(road: np.ndarray, window: Region, scene: Shape2d, min_component_px: int) -> np.ndarray:
    """Road specks and holes under ``min_component_px`` removed, as :func:`_clean_road_whole` does.

    Worked over the road's bounding box with a margin when that gives the same answer, which it does
    unless a background component reaching the margin's outer edge is small there (then the whole window
    is used): everything outside the box is background that joins such components, and road components
    lie inside it. A chunk with one short road is not labelled whole twice (91 against 8 ms for a 20 x 600
    road in a 2176^2 chunk).
    """
    if min_component_px <= 0:
        return road
    open_sides = _open_sides(window, scene)
    # A margin whose ring alone holds min_component_px pixels: the outer background is seldom small.
    box = _box(road, 1 + math.isqrt(min_component_px))
    if box is None:
        return road
    inner = (box[0].start > 0, box[0].stop < road.shape[0], box[1].start > 0, box[1].stop < road.shape[1])
    # Sides of the box inside the window: no road reaches them, and the background there continues outside.
    sides = tuple(is_open and not is_inner for is_open, is_inner in zip(open_sides, inner, strict=True))
    sub = _drop_small(road[box], min_component_px, sides)
    labels, sizes, small = _small_components(~sub, min_component_px, tuple(
        s or i for s, i in zip(sides, inner, strict=True)))
    for is_inner, edge in zip(inner, _edges(labels), strict=True):
        if is_inner and (sizes[edge[edge > 0]] < min_component_px).any():
            return _clean_road_whole(road, open_sides, min_component_px)
    out = np.zeros_like(road)
    out[box] = sub | small[labels]
    return out


def _clean_road_whole(
    road: np.ndarray, open_sides: tuple[bool, bool, bool, bool], min_component_px: int
) -> np.ndarray:
    road = _drop_small(road, min_component_px, open_sides)
    return ~_drop_small(~road, min_component_px, open_sides)


def skeleton_lines(
    road: np.ndarray, window: Region, core: Region, scene: Shape2d, *, min_component_px: int = 0
) -> np.ndarray:
    """The centerline pieces one chunk contributes: skeleton paths in its core and connectors leaving it.

    Args:
        road: boolean road mask of ``window`` (the core plus its halo, clipped to the scene).
        window: the pixels ``road`` covers, in scene coordinates.
        core: the pixels this chunk owns; lies inside ``window``.
        scene: the scene size (window edges on the scene border need no context).
        min_component_px: road specks and holes smaller than this are removed before skeletonizing.

    Returns:
        LineStrings in scene pixel coordinates inside the core, split wherever a connector attaches,
        with the half of every connector that lies in the core.
    """
    road = np.asarray(road, dtype=bool)
    if not road.any():  # most chunks of a rural or coastal scene: nothing to clean or thin
        return np.zeros(0, dtype=object)
    skel = _skeletonize_in_bounds(_clean_road(road, window, scene, min_component_px))
    rows, cols = core.slices_in(window)
    core_skel = skel[rows, cols]
    if not core_skel.any():
        return np.zeros(0, dtype=object)

    # Connectors between core pixels and skeleton neighbours outside the core: the half up to the core
    # edge is drawn here (the other chunk draws the other half), and paths end at every one of them.
    pr, pc = np.nonzero(core_skel)
    pr, pc = pr + rows.start, pc + cols.start  # window coordinates
    r0, c0, r1, c1 = rows.start, cols.start, rows.stop, cols.stop
    attach = np.zeros_like(core_skel)
    starts, ends = [], []
    for dr, dc in (*_FORWARD, *((-dr, -dc) for dr, dc in _FORWARD)):
        qr, qc = pr + dr, pc + dc
        ok = (qr >= 0) & (qr < skel.shape[0]) & (qc >= 0) & (qc < skel.shape[1])
        ok &= ~((qr >= r0) & (qr < r1) & (qc >= c0) & (qc < c1))
        idx = np.flatnonzero(ok)
        idx = idx[skel[qr[idx], qc[idx]]]
        if dr and dc:
            # A diagonal step is redundant where a shared 4-neighbour is skeleton too: skip it to avoid
            # one-pixel triangles.
            idx = idx[~(skel[pr[idx], qc[idx]] | skel[qr[idx], pc[idx]])]
        attach[pr[idx] - r0, pc[idx] - c0] = True
        starts.append(np.column_stack([pr[idx], pc[idx]]))
        ends.append(np.column_stack([pr[idx] + dr / 2, pc[idx] + dc / 2]))  # the midpoint, on the core edge
    start_px = np.concatenate(starts)
    end_px = np.concatenate(ends)

    lines = _split_at(_core_paths(core_skel), attach, (core.row, core.col))
    # (row, col) in the window -> (x, y) of pixel centres in the scene.
    connectors = np.stack([start_px[:, ::-1], end_px[:, ::-1]], axis=1) + (window.col + 0.5, window.row + 0.5)
    return np.concatenate([lines, shapely.linestrings(connectors)]) if len(connectors) else lines


def split_lines(lines: np.ndarray, cells: CellGrid) -> tuple[np.ndarray, np.ndarray]:
    """Cut pixel-centre lines (as :func:`skeleton_lines` gives them) where they cross a cell line.

    A step between pixels of two cells is cut at its midpoint, which lies on the cell line and ends one
    piece and starts the next, as the connectors of :func:`skeleton_lines` do at chunk edges.

    Returns:
        The pieces and the cell of each.
    """
    if len(lines) == 0:
        return lines, np.zeros(0, dtype=np.int64)
    xy, line = shapely.get_coordinates(lines, return_index=True)
    first = np.concatenate([[True], line[1:] != line[:-1]])
    last = np.concatenate([line[1:] != line[:-1], [True]])
    cell = cells.of_points(xy[:, 0], xy[:, 1])
    # A cut point (an end of a connector's half) belongs to the cell of the pixel it comes from.
    cut = _is_cut(xy)
    n = len(xy)
    neighbour = np.where(last, np.arange(n) - 1, np.minimum(np.arange(n) + 1, n - 1))
    cell[cut] = cell[neighbour[cut]]
    cross = np.flatnonzero(~last & (cell != np.roll(cell, -1)))
    if len(cross) == 0:
        return lines, cell[first]
    starts_piece = first.copy()
    starts_piece[cross + 1] = True
    piece = np.cumsum(starts_piece) - 1
    mid = (xy[cross] + xy[cross + 1]) / 2
    # Each midpoint twice, ending the piece before it and starting the one after: sorted in after xy[i].
    coords = np.concatenate([xy, mid, mid])
    pieces = np.concatenate([piece, piece[cross], piece[cross + 1]])
    order = np.argsort(np.concatenate([4 * np.arange(n), 4 * cross + 1, 4 * cross + 2]), kind="stable")
    piece_cell = np.zeros(piece[-1] + 1, dtype=np.int64)
    piece_cell[piece] = cell
    return shapely.linestrings(coords[order], indices=pieces[order]), piece_cell


def _is_cut(xy: np.ndarray) -> np.ndarray:
    """Whether each vertex is a cut point (a chunk-edge or cell-line midpoint), not a pixel centre."""
    return (xy == np.floor(xy)).any(axis=1)


def _skeletonize_in_bounds(binary: np.ndarray) -> np.ndarray:
    """``skeletonize(binary)``, thinned only over the bounding box of its pixels plus one empty pixel a side.

    Thinning looks at 3 x 3 neighbourhoods and never sets a pixel, so outside the box nothing changes and
    inside it a ring of zeros is what the whole image shows; the result is the same (tested), but a chunk
    with one short road is not swept whole on every pass (136-170 against 2.4 ms for a 20 x 600 road in a
    2176^2 chunk, the box's zeroed output included).
    """
    out = np.zeros(binary.shape, dtype=bool)
    box = _box(binary, 1)
    if box is not None:
        out[box] = skeletonize(binary[box])
    return out


def _pixel_edges(skel: np.ndarray) -> np.ndarray:
    """The 8-adjacencies of a skeleton as ``(n, 2, 2)`` (row, col) pairs, each once, redundant diagonals dropped.

    Looked up from the skeleton's own pixels (0.1 % of a chunk of the synthetic town), not by ANDing
    shifted copies of the whole chunk: 0.29 against 1.2 s for the 16 road skeletons of its 8192^2 scene,
    same edges in the same order (per direction, in raster order of the first pixel).
    """
    rows, cols = skel.shape
    pr, pc = np.nonzero(skel)
    edges = []
    for dr, dc in _FORWARD:
        qr, qc = pr + dr, pc + dc
        inside = (qr < rows) & (qc >= 0) & (qc < cols)
        r, c, qr, qc = pr[inside], pc[inside], qr[inside], qc[inside]
        both = skel[qr, qc]
        if dr and dc:
            both &= ~(skel[r, qc] | skel[qr, c])
        r, c, qr, qc = r[both], c[both], qr[both], qc[both]
        edges.append(np.stack([np.column_stack([r, c]), np.column_stack([qr, qc])], axis=1))
    return np.concatenate(edges)


def _core_paths(core_skel: np.ndarray) -> np.ndarray:
    """The core skeleton's paths between junctions and ends, in core (col, row) pixel-index coordinates."""
    edges = _pixel_edges(core_skel)
    if len(edges) == 0:
        return np.zeros(0, dtype=object)
    segments = shapely.linestrings(edges[:, :, ::-1].astype(np.float64))
    return shapely.get_parts(shapely.line_merge(shapely.multilinestrings(segments)))


def _split_at(paths: np.ndarray, cut: np.ndarray, origin: tuple[int, int]) -> np.ndarray:
    """Split paths at their inner vertices where ``cut`` is set, and move them to scene pixel centres.

    A cut vertex ends one piece and starts the next, so a connector attached there meets line ends only.
    """
    if len(paths) == 0:
        return paths
    xy, line = shapely.get_coordinates(paths, return_index=True)
    first = np.r_[True, line[1:] != line[:-1]]
    last = np.r_[line[1:] != line[:-1], True]
    is_cut = cut[xy[:, 1].astype(np.int64), xy[:, 0].astype(np.int64)] & ~first & ~last
    # A cut vertex is written twice: once ending its piece and once starting the next one.
    piece = np.cumsum(first | np.r_[False, is_cut[:-1]]) - 1
    repeat = 1 + is_cut
    pieces = np.repeat(piece, repeat)
    pieces[np.cumsum(repeat)[is_cut] - 1] += 1
    coords = np.repeat(xy, repeat, axis=0) + (origin[1] + 0.5, origin[0] + 0.5)
    return shapely.linestrings(coords, indices=pieces)


def _endpoint_degrees(lines: np.ndarray, cuts: bool) -> tuple[np.ndarray, np.ndarray]:
    """How many line ends meet at each line's start and end point (2 at a cut point, when ``cuts``)."""
    ends = np.concatenate(
        [
            shapely.get_coordinates(shapely.get_point(lines, 0)),
            shapely.get_coordinates(shapely.get_point(lines, -1)),
        ]
    )
    _, inverse, counts = np.unique(ends, axis=0, return_inverse=True, return_counts=True)
    degree = counts[inverse.ravel()]
    if cuts:  # the line goes on in the next cell
        degree = np.where(_is_cut(ends), np.maximum(degree, 2), degree)
    return degree[: len(lines)], degree[len(lines) :]


def _drop_inner_cuts(lines: np.ndarray) -> np.ndarray:
    """Remove the cut points merging left inside lines (two halves of a connector met there).

    A closed line may start at one: it is then started at the next vertex instead.
    """
    xy, line = shapely.get_coordinates(lines, return_index=True)
    cut = _is_cut(xy)
    if not cut.any():
        return lines
    first = np.concatenate([[True], line[1:] != line[:-1]])
    last = np.concatenate([line[1:] != line[:-1], [True]])
    keep = ~cut | first | last
    out = shapely.linestrings(xy[keep], indices=line[keep])
    for i in np.flatnonzero(shapely.is_closed(lines) & _is_cut(shapely.get_coordinates(shapely.get_point(lines, 0)))):
        ring = shapely.get_coordinates(out[i])[1:-1]
        out[i] = shapely.linestrings(np.concatenate([ring, ring[:1]]))
    return out


def merge_centerlines(
    lines: np.ndarray, *, prune_length: float, rounds: int = 3, cuts: bool = False
) -> np.ndarray:
    """Merge centerline pieces through degree-2 nodes and prune short spurs and short isolated lines.

    Args:
        lines: noded LineStrings (pieces meet only at their ends).
        prune_length: a branch with a free end shorter than this is removed (in the lines' units).
        rounds: prune and re-merge this often (a pruned spur can leave a shorter spur behind).
        cuts: the lines run through pixel centres and are cut at chunk edges or cell lines (see the
            module's notes): cut points inside a merged line are dropped, and ends on one are not free.

    Returns:
        The merged LineStrings, normalized, in a deterministic order.
    """
    lines = np.asarray(lines, dtype=object)
    if len(lines) == 0:
        return lines
    for _ in range(rounds + 1):
        lines = shapely.get_parts(shapely.line_merge(shapely.multilinestrings(lines)))
        if cuts:
            lines = _drop_inner_cuts(lines)
        if len(lines) == 0 or prune_length <= 0:
            break
        deg_start, deg_end = _endpoint_degrees(lines, cuts)
        closed = shapely.is_closed(lines)
        free_end = ((deg_start == 1) | (deg_end == 1)) & ~closed
        short = shapely.length(lines) < prune_length
        spur = free_end & short
        if not spur.any():
            break
        lines = lines[~spur]
    lines = shapely.normalize(lines)
    if len(lines) == 0:
        return lines
    bounds = shapely.bounds(lines)
    order = np.lexsort((shapely.length(lines), bounds[:, 3], bounds[:, 2], bounds[:, 1], bounds[:, 0]))
    return lines[order]
