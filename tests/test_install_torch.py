"""``make setup``'s choice of PyTorch build (scripts/install_torch.py), run dry with a fake ``nvidia-smi`` on
PATH and real local indexes: a GPU gets the CUDA build, no GPU PyTorch's CPU index, and the default index
when that cannot be reached; TORCH_INDEX_URL always wins."""

from __future__ import annotations

import http.server
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import loopback_server

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "install_torch.py"


class _Index(http.server.BaseHTTPRequestHandler):
    """A wheel index that has torch."""

    def do_GET(self):  # noqa: N802 (http.server's naming)
        self.send_response(200 if self.path.rstrip("/").endswith("/torch") else 404)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def cpu_index():
    with loopback_server(_Index) as url:
        yield f"{url}/whl/cpu"


@pytest.fixture
def closed_index():
    """An index URL on a loopback port nothing listens on: refused at once, as an offline mirror is."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/whl/cpu"


def _path_with(tmp_path: Path, smi: str | None) -> str:
    """A PATH whose only directory holds a fake ``nvidia-smi`` (a shell script) or nothing."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    if smi is not None:
        fake = bin_dir / "nvidia-smi"
        fake.write_text(f"#!/bin/sh\n{smi}\n")
        fake.chmod(0o755)
    return f"{bin_dir}:/bin:/usr/bin"


GPU = 'echo "GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-0)"'
NO_DRIVER = 'echo "NVIDIA-SMI has failed because it could not communicate with the NVIDIA driver." >&2; exit 9'


def install(tmp_path: Path, smi: str | None, *args: str) -> tuple[str, str]:
    """The script's decision and pip command, dry."""
    done = subprocess.run([sys.executable, str(SCRIPT), "--version", "2.13.0", "--dry-run", *args],
                          env={"PATH": _path_with(tmp_path, smi)}, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    why, command = done.stdout.strip().splitlines()
    return why, command


def test_a_visible_gpu_gets_the_cuda_build_from_the_default_index(tmp_path, cpu_index):
    why, command = install(tmp_path, GPU, "--cpu-index-url", cpu_index)
    assert "NVIDIA GPU found" in why
    assert command.endswith("-m pip install torch==2.13.0 --quiet") and "--index-url" not in command


@pytest.mark.parametrize("smi", [None, NO_DRIVER], ids=["no-nvidia-smi", "nvidia-smi-without-driver"])
def test_no_gpu_gets_the_cpu_build_from_pytorchs_cpu_index(tmp_path, cpu_index, smi):
    why, command = install(tmp_path, smi, "--cpu-index-url", cpu_index)
    assert why.startswith("no GPU: installing the CPU build")
    assert command.endswith(f"install torch==2.13.0 --index-url {cpu_index} --quiet")


def test_no_gpu_and_no_cpu_index_falls_back_to_the_default_index_at_once(tmp_path, closed_index):
    start = time.monotonic()
    why, command = install(tmp_path, None, "--cpu-index-url", closed_index)
    assert time.monotonic() - start < 10
    assert "cannot be reached" in why and "default index" in why
    assert command.endswith("install torch==2.13.0 --quiet") and "--index-url" not in command


def test_the_real_cpu_index_is_the_default_probe(tmp_path):
    """Without --cpu-index-url the script asks download.pytorch.org (here: answered or not, within seconds)."""
    start = time.monotonic()
    why, command = install(tmp_path, None)
    assert time.monotonic() - start < 20
    assert "https://download.pytorch.org/whl/cpu" in why


@pytest.mark.parametrize("smi", [GPU, None], ids=["gpu", "no-gpu"])
def test_an_explicit_index_wins(tmp_path, smi):
    url = "https://download.pytorch.org/whl/cu126"
    why, command = install(tmp_path, smi, "--index-url", url)
    assert why == f"installing torch==2.13.0 from {url}"
    assert command.endswith(f"install torch==2.13.0 --index-url {url} --quiet")


def test_make_setup_runs_the_script_with_the_makefiles_variables():
    """`make -n` prints what setup would run: the script, given TORCH_VERSION and TORCH_INDEX_URL."""
    import shutil

    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    done = subprocess.run(["make", "-n", "-B", "setup", "VENV=/nonexistent-venv", "TORCH_INDEX_URL=https://x/cu130"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    script = next(i for i, line in enumerate(lines) if "scripts/install_torch.py" in line)
    assert '--version "2.13.0" --index-url "https://x/cu130"' in lines[script]
    sceneseg = next(i for i, line in enumerate(lines) if '-e ".[test]"' in line)
    assert script < sceneseg, "torch is installed before sceneseg"
