"""The README's workstation route to the nightly deployment, run as written against a real Prefect server:
create the process pool, `prefect deploy --all` from the repository root, and find the deployment there."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PREFECT = Path(sys.executable).with_name("prefect")
#: How long the server may take to answer on this machine before the test is skipped (71 s measured
#: on 2 busy cores).
STARTUP_SECONDS = 120



def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> dict | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return json.loads(response.read())
    except (OSError, ValueError):
        return None


@pytest.fixture
def prefect_server(tmp_path):
    """`prefect server start` on a free loopback port with its own home and SQLite database; yields its
    environment for clients, or skips when it does not answer within STARTUP_SECONDS."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env |= {"PREFECT_HOME": str(tmp_path / "prefect-home"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DO_NOT_TRACK": "1"}
    port = _free_port()
    log = (tmp_path / "server.log").open("w")
    server = subprocess.Popen([str(PREFECT), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                              env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    api = f"http://127.0.0.1:{port}/api"
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while _get(f"{api}/health") is None:
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.skip(f"prefect server start did not answer on {api} within {STARTUP_SECONDS} s "
                            f"(exit {server.poll()}): {(tmp_path / 'server.log').read_text()[-500:]}")
            time.sleep(1)
        yield env | {"PREFECT_API_URL": api}
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
        log.close()


def _prefect(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([str(PREFECT), "--no-prompt", *args], env=env, cwd=REPO, capture_output=True, text=True,
                          timeout=300)


@pytest.mark.slow
def test_workstation_route_deploys_the_process_deployment_without_the_docker_pool(prefect_server, tmp_path):
    env = prefect_server | {"SCENESEG_INBOX": str(tmp_path / "inbox"), "SCENESEG_OUT": str(tmp_path / "out")}
    pool = _prefect("work-pool", "create", "sceneseg-process", "--type", "process", env=env)
    assert pool.returncode == 0, pool.stdout + pool.stderr
    # As the README has it: from the repository root, with only the process pool on the server.
    deploy = _prefect("deploy", "--all", env=env)
    assert deploy.returncode == 0, deploy.stdout + deploy.stderr

    deployment = _get(f"{env['PREFECT_API_URL']}/deployments/name/nightly/nightly-process")
    assert deployment is not None, deploy.stdout
    assert deployment["work_pool_name"] == "sceneseg-process"
    # The paths come from the environment `prefect deploy` ran in: no container paths on a workstation.
    assert deployment["parameters"]["inbox"] == str(tmp_path / "inbox")
    assert deployment["parameters"]["out_dir"] == str(tmp_path / "out")
    assert deployment["parameters"]["model"] == "buildings-banepa"
    assert deployment["parameters"]["dask_address"] is None
    # The worker runs the entrypoint from the directory the deployment was made in.
    (step,) = deployment["pull_steps"]
    assert step["prefect.deployments.steps.set_working_directory"]["directory"] == str(REPO)
