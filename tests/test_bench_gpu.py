"""bench/gpu.sh, the one command for a lent GPU, runs end to end on the CPU with --dry-run and prints one
well-formed JSON object (the real run is the same code on a CUDA device)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_script_dry_run_prints_its_json(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable}
    done = subprocess.run(
        ["bash", str(REPO / "bench" / "gpu.sh"), "--dry-run", "--work-dir", str(tmp_path)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert result["benchmark"] == "gpu" and result["dry_run"] is True and result["device"] == "cpu"
    [run] = result["model_alone"]
    assert run["gflop_per_forward"] > 0 and run["seconds_per_forward"] > 0
    assert result["pipeline"]["ratio_pipeline_over_model"] > 0
    assert result["pipeline"]["stage_seconds"]["infer"] > 0
    assert any("no CUDA device" in reason for reason in result["skipped"])
    assert not (REPO / "bench" / "RESULTS.md").read_text().count(str(tmp_path))  # a dry run is never recorded
