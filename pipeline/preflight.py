"""Checks a run makes before it reads a pixel: the output directory, its free space, the output CRS, and
the scene's id there. Each names the option or file, what is wrong and what to do; none writes anything.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import math
import os
import shutil
import threading
from pathlib import Path

from pyproj import CRS, Transformer
from pyproj.exceptions import CRSError, ProjError

from pipeline.errors import ConfigError, OutputError
from pipeline.raster.journal import BlockJournal
from pipeline.raster.scene import SceneInfo, scene_id_for
from pipeline.vectors.gpkg import GPKG_NAME, layer_crs, published_path

__all__ = [
    "FREE_SPACE_MARGIN",
    "check_free_space",
    "check_output_dir",
    "output_crs_for",
    "check_output_crs",
    "output_scene_id",
    "source_path",
    "distinct_scenes",
    "claim_scene_id",
    "release_claim",
    "CLAIM_SUFFIX",
]

#: Free space asked for beyond the working arrays and outputs (a factor; the environment may raise it).
FREE_SPACE_MARGIN = 1.25


def check_free_space(out_dir: Path, needed: int) -> None:
    """Refuse a run the disk of ``out_dir`` cannot hold, with ``SCENESEG_FREE_SPACE_MARGIN`` (default 1.25) to spare.

    Raises:
        OutputError: naming the directory, what is free and what is needed.
    """
    margin = float(os.environ.get("SCENESEG_FREE_SPACE_MARGIN", FREE_SPACE_MARGIN))
    free = shutil.disk_usage(_existing_ancestor(out_dir)).free
    if free < needed * margin:
        raise OutputError(
            f"--out {out_dir}: {free / 2**20:,.0f} MiB free, but this scene needs about "
            f"{needed * margin / 2**20:,.0f} MiB for its working arrays and outputs. Free space on that disk or "
            "choose another --out."
        )


def _existing_ancestor(path: Path) -> Path:
    path = path.absolute()
    while not path.exists():
        path = path.parent
    return path


def check_output_dir(out_dir: Path) -> None:
    """``--out`` must be a directory, or creatable, and writable.

    Raises:
        OutputError: it names a file, or the directory (or the one it would be made in) is not writable.
    """
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"--out {out_dir}: is a file, not a directory. Give a directory (it is created if missing).")
    base = _existing_ancestor(out_dir)
    if not base.is_dir():
        raise OutputError(f"--out {out_dir}: {base} is a file, so the directory cannot be created. Give another path.")
    if not os.access(base, os.W_OK | os.X_OK):
        raise OutputError(
            f"--out {out_dir}: {base} is not writable by this user. Choose a writable directory or fix its permissions."
        )


def output_crs_for(output_crs: str | None, gpkg: Path) -> tuple[CRS | None, dict[str, CRS]]:
    """The ``--output-crs`` asked for (valid and agreeing with the GeoPackage's layers) and those layers' CRSs."""
    wanted = None
    if output_crs is not None:
        try:
            wanted = CRS.from_user_input(output_crs)
        except CRSError as exc:
            raise ConfigError(
                f"--output-crs {output_crs}: not a CRS ({exc}). Give an EPSG code such as EPSG:32645, or WKT/PROJ text."
            ) from exc
    existing = layer_crs(gpkg) if gpkg.is_file() else {}
    if wanted is not None:
        clash = sorted({c.to_string() for c in existing.values() if not c.equals(wanted)})
        if clash:
            raise ConfigError(
                f"--output-crs {output_crs}: {gpkg} keeps its layers in {', '.join(clash)}. Leave --output-crs unset "
                "(scenes are reprojected into the GeoPackage's CRS) or choose another --out."
            )
    return wanted, existing


def check_output_crs(output_crs: str | None, scene: SceneInfo, gpkg: Path) -> None:
    """The vector CRS must be valid, agree with the GeoPackage's layers, and take the scene's footprint.

    Raises:
        ConfigError: naming ``--output-crs`` (or the GeoPackage) and the fix.
    """
    wanted, existing = output_crs_for(output_crs, gpkg)
    target = wanted or next(iter(existing.values()), None)
    if target is None:
        return
    try:
        xs, ys = Transformer.from_crs(scene.crs, target, always_xy=True).transform(
            [scene.bounds[0], scene.bounds[2]], [scene.bounds[1], scene.bounds[3]], errcheck=True
        )
        finite = all(math.isfinite(v) for v in (*xs, *ys))
    except ProjError:
        finite = False
    if not finite:
        option = "--output-crs" if wanted is not None else f"the CRS of {gpkg}"
        raise ConfigError(
            f"{scene.path}: its footprint cannot be reprojected from {scene.crs.to_string()} to {option} "
            f"({target.to_string()}). Choose an output CRS that covers the scene."
        )


def source_path(scene_path: str | os.PathLike[str]) -> Path:
    """The scene's path as outputs record it: resolved, or absolute where it cannot be (a symlink loop)."""
    path = Path(scene_path)
    try:
        return path.resolve()
    except (OSError, RuntimeError):  # RuntimeError: Python's "Symlink loop" on 3.11
        return path.absolute()


def distinct_scenes(paths: list[Path]) -> list[Path]:
    """``paths`` in order without repeats of one file (the same path twice, or two names of it): one scene."""
    seen: set[Path] = set()
    out = []
    for path in paths:
        key = source_path(path)
        if key not in seen:
            seen.add(key)
            out.append(path)
    return out


def output_scene_id(scene_path: Path, out_dir: Path) -> str:
    """The scene's id in ``out_dir``: the file name without extension, unless another file already has it.

    Outputs and GeoPackage rows are named by the id, so two source files must never share one. When the
    plain name is taken by another file (a row of the GeoPackage's scenes layer, a running or unfinished
    run's claim or working directory, or a run record naming another path), the id gets a short hash of the
    resolved path, e.g. ``ortho-3f9a2c1d``: stable for that file, so rerunning it finds its own outputs.
    This only looks; :func:`claim_scene_id` takes the id, atomically, for a run.
    """
    return _id_for(str(source_path(scene_path)), out_dir, scene_id_for(Path(scene_path)))


def _id_for(source: str, out_dir: Path, plain: str) -> str:
    return plain if _owner(out_dir, plain) in (None, source) else _hashed_id(plain, source)


def _hashed_id(plain: str, source: str) -> str:
    """The id of a file whose plain name another file holds: stable for that file's resolved path."""
    return f"{plain}-{hashlib.sha1(source.encode()).hexdigest()[:8]}"


#: A run's claim on its scene id: ``<out>/.sceneseg-work/<id>.claim``, holding the source path.
CLAIM_SUFFIX = ".claim"


def _claim_path(out_dir: Path, scene_id: str) -> Path:
    return out_dir / ".sceneseg-work" / f"{scene_id}{CLAIM_SUFFIX}"


def claim_scene_id(scene_path: Path, out_dir: Path, scene_id: str | None = None) -> tuple[str, bool]:
    """Take the scene's id in ``out_dir`` for a run, atomically: ``(id, whether this call created the claim)``.

    Two processes starting same-named scenes from two folders at once both see the plain name free; the
    claim file is created by a hard link, which fails when it exists, so exactly one gets the plain name and
    the other reads its owner and takes the hashed id. The claim of the same source (a re-run, a resume)
    is its own. It lives until the run has written its run record (:func:`release_claim`).

    While this process runs the scene it holds the claim locked (``flock``, which the kernel drops when the
    process dies, so a killed run leaves nothing held): a second process on the same scene and ``--out``
    is refused instead of sharing the working directory.

    Raises:
        OutputError: another process is running this scene into ``out_dir`` now.
    """
    source = str(source_path(scene_path))
    plain = scene_id or scene_id_for(Path(scene_path))
    for _ in range(3):  # a claim released between our link and our lock is taken afresh
        candidate = _id_for(source, out_dir, plain)
        for attempt in (candidate, _hashed_id(plain, source)):
            claim = _claim_path(out_dir, attempt)
            claim.parent.mkdir(parents=True, exist_ok=True)
            tmp = claim.with_name(f".{claim.name}.{os.getpid()}.{threading.get_ident()}.tmp")
            tmp.write_text(source)
            try:
                os.link(tmp, claim)
                created = True
            except FileExistsError:
                if _read_claim(claim) != source:
                    continue
                created = False
            finally:
                tmp.unlink(missing_ok=True)
            if _hold(claim, source, out_dir):
                return attempt, created
            break
        else:
            raise OutputError(f"{out_dir}: the scene id {attempt!r} of {source} is claimed by another file "
                              f"({_read_claim(_claim_path(out_dir, attempt))}). Remove "
                              f"{_claim_path(out_dir, attempt)} if no run is using it, and run again.")
    raise OutputError(f"{out_dir}: could not claim an id for {source}: its claim kept changing under other runs. "
                      "Run again once they are done.")


#: Claims this process holds locked: path -> open file descriptor.
_held: dict[Path, int] = {}
_held_lock = threading.Lock()


def _hold(claim: Path, source: str, out_dir: Path) -> bool:
    """Lock ``claim`` for this process; False when it vanished or was replaced meanwhile (claim again)."""
    with _held_lock:
        if claim in _held:
            return True
        try:
            fd = os.open(claim, os.O_RDONLY)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise OutputError(
                f"{source}: another process is segmenting this scene into {out_dir} now (it holds {claim}). "
                "Wait for it to finish, or stop it, and run the same command again: it resumes."
            ) from None
        try:
            same = os.stat(claim).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if not same:
            os.close(fd)
            return False
        _held[claim] = fd
        return True


def release_claim(out_dir: Path, scene_id: str) -> None:
    """Drop a run's claim on its id (the GeoPackage row and the run record name the owner from now on)."""
    claim = _claim_path(out_dir, scene_id)
    claim.unlink(missing_ok=True)
    with _held_lock:
        fd = _held.pop(claim, None)
    if fd is not None:
        os.close(fd)  # after the unlink: whoever locks the old file next sees it is gone, and claims afresh
    try:
        (out_dir / ".sceneseg-work").rmdir()  # the working root goes with its last scene
    except OSError:
        pass


def _read_claim(claim: Path) -> str | None:
    try:
        return claim.read_text()
    except OSError:
        return None


def _owner(out_dir: Path, scene_id: str) -> str | None:
    """The source path that already holds ``scene_id`` in ``out_dir``, if any."""
    owner = published_path(out_dir / GPKG_NAME, scene_id) or _read_claim(_claim_path(out_dir, scene_id))
    if owner is not None:
        return owner
    for record, key in ((out_dir / ".sceneseg-work" / scene_id / BlockJournal.STATE, "scene"),
                        (out_dir / f"{scene_id}_run.json", "scene")):
        try:
            return str(json.loads(record.read_text())[key])
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return None
