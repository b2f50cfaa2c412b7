"""The package layering (pyproject.toml, [tool.importlinter]) holds: flows -> pipeline -> models, the
engine's rooms in their order, no Prefect below the flows, no raster or vector internals in the flows (they
run pipeline.stages), nothing geospatial in the models."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_import_contracts_are_kept():
    lint = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run([str(lint), "--no-cache"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "5 kept, 0 broken" in done.stdout, done.stdout


def test_the_vector_chunk_process_starts_without_torch():
    """The chunk process beside inference imports the vector stage only: torch would add ~3 s and ~180 MB
    to it (its peak RSS counts in the scene's), which ``models``' lazy exports keep out."""
    code = ("import sys, pipeline.vectors.stream, pipeline.vectors.spool, pipeline.errors; "
            "print(sorted(m for m in ('torch', 'prefect', 'distributed') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]", done.stdout
