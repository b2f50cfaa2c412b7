"""Container images, the compose stack and the Prefect deployments, checked without a Docker engine."""

from __future__ import annotations

import ast
import fnmatch
import http.server
import importlib.util
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.helpers import loopback_server

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"
DOCKERFILES = {"cpu": DOCKER / "Dockerfile.cpu", "gpu": DOCKER / "Dockerfile.gpu"}
COMPOSE = DOCKER / "compose.yaml"
PREFECT_YAML = ROOT / "prefect.yaml"
#: The compose stack's deployments; prefect.yaml is the workstation's.
STACK_PREFECT_YAML = DOCKER / "prefect.yaml"


# --------------------------------------------------------------------------------------------- helpers


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs of a Dockerfile, continuation lines joined, comments dropped."""
    logical, current = [], ""
    for line in dockerfile.read_text().splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        current += " " + stripped.removesuffix("\\") if current else stripped.removesuffix("\\")
        if not stripped.endswith("\\"):
            logical.append(current.strip())
            current = ""
    return [(text.split(None, 1)[0].upper(), text.split(None, 1)[1] if " " in text else "") for text in logical]


def final_stage(dockerfile: Path) -> list[tuple[str, str]]:
    steps = instructions(dockerfile)
    last_from = max(i for i, (op, _) in enumerate(steps) if op == "FROM")
    return steps[last_from:]


def arg_default(dockerfile: Path, name: str) -> str:
    for op, args in instructions(dockerfile):
        if op == "ARG" and args.startswith(f"{name}="):
            return args.split("=", 1)[1]
    raise AssertionError(f"{dockerfile.name} has no ARG {name}=<default>")


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def deployments(path: Path = STACK_PREFECT_YAML) -> dict[str, dict]:
    return {d["name"]: d for d in yaml.safe_load(path.read_text())["deployments"]}


#: Every deployment of both files, as (file, name).
ALL_DEPLOYMENTS = [(PREFECT_YAML, "nightly-process"), (STACK_PREFECT_YAML, "nightly-process"),
                   (STACK_PREFECT_YAML, "nightly-docker")]


def command_text(service: dict) -> str:
    command = service.get("command", "")
    return " ".join(command) if isinstance(command, list) else command


def load_healthcheck():
    spec = importlib.util.spec_from_file_location("sceneseg_healthcheck", DOCKER / "healthcheck.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ------------------------------------------------------------------------------------------ Dockerfiles


@pytest.mark.parametrize("kind", sorted(DOCKERFILES))
def test_image_runs_as_a_non_root_user(kind):
    stage = final_stage(DOCKERFILES[kind])
    users = [args.split(":")[0] for op, args in stage if op == "USER"]
    assert users, f"Dockerfile.{kind}: the runtime stage never switches USER, so it runs as root"
    assert users[-1] not in {"root", "0"}, f"Dockerfile.{kind} runs as {users[-1]}"
    created = " ".join(args for op, args in stage if op == "RUN")
    assert f"--uid {users[-1]}" in created, f"Dockerfile.{kind}: user {users[-1]} is never created"


@pytest.mark.parametrize("kind", sorted(DOCKERFILES))
def test_image_is_multi_stage_with_a_healthcheck_and_a_default_command(kind):
    steps = instructions(DOCKERFILES[kind])
    assert sum(op == "FROM" for op, _ in steps) >= 2, f"Dockerfile.{kind} is a single stage"
    stage_ops = [op for op, _ in final_stage(DOCKERFILES[kind])]
    assert "HEALTHCHECK" in stage_ops and "CMD" in stage_ops


@pytest.mark.parametrize("kind", sorted(DOCKERFILES))
def test_dependencies_are_installed_before_the_sources_are_copied(kind):
    copies = [args for op, args in instructions(DOCKERFILES[kind]) if op == "COPY" and "--from" not in args]
    first = {name: next(i for i, args in enumerate(copies) if args.split()[0] == name)
             for name in ("pyproject.toml", "pipeline")}
    assert first["pyproject.toml"] < first["pipeline"], f"Dockerfile.{kind} copies sources before pyproject"


def test_images_pin_torch_and_share_one_python_and_dask_version():
    assert arg_default(DOCKERFILES["cpu"], "TORCH_VERSION") == arg_default(DOCKERFILES["gpu"], "TORCH_VERSION")
    assert arg_default(DOCKERFILES["cpu"], "TORCH_VERSION") == "2.13.0"
    assert arg_default(DOCKERFILES["cpu"], "TORCH_INDEX_URL").endswith("/whl/cpu")
    assert re.search(r"/whl/cu\d+$", arg_default(DOCKERFILES["gpu"], "TORCH_INDEX_URL"))
    # The client and scheduler (CPU image) and the GPU workers exchange pickles and Dask's protocol.
    for name in ("PYTHON_VERSION", "DASK_VERSION"):
        assert arg_default(DOCKERFILES["cpu"], name) == arg_default(DOCKERFILES["gpu"], name), name


def test_gpu_image_default_command_is_a_gpu_dask_worker():
    cmd = next(args for op, args in final_stage(DOCKERFILES["gpu"]) if op == "CMD")
    assert "dask worker" in cmd and "--resources GPU=1" in cmd


@pytest.mark.parametrize("kind", sorted(DOCKERFILES))
def test_every_copied_path_exists_and_is_not_dockerignored(kind):
    ignored = [p.strip().rstrip("/") for p in (ROOT / ".dockerignore").read_text().splitlines()
               if p.strip() and not p.startswith(("#", "!"))]
    for op, args in instructions(DOCKERFILES[kind]):
        if op != "COPY" or "--from" in args:
            continue
        for source in shlex.split(args)[:-1]:
            assert (ROOT / source).exists(), f"Dockerfile.{kind} copies {source}, which is not in the repository"
            hits = [p for p in ignored if fnmatch.fnmatch(source, p) or source.startswith(p + "/")]
            assert not hits, f"Dockerfile.{kind} copies {source}, but .dockerignore excludes it ({hits})"


# ------------------------------------------------------------------------------------------ compose


def test_compose_has_the_stack_and_builds_from_the_repository_root():
    services = compose()["services"]
    assert {"postgres", "prefect-server", "prefect-worker", "dask-scheduler", "dask-gpu-worker"} <= set(services)
    for name, service in services.items():
        if "build" in service:
            context = (DOCKER / service["build"]["context"]).resolve()
            assert context == ROOT, f"{name} builds from {context}"
            assert (context / service["build"]["dockerfile"]).is_file()
        assert "healthcheck" in service or "build" in service, f"{name} has no health check"


def test_gpu_worker_reserves_one_gpu_and_advertises_it():
    worker = compose()["services"]["dask-gpu-worker"]
    assert worker["build"]["dockerfile"] == "docker/Dockerfile.gpu"
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    assert "--resources GPU=1" in command_text(worker)
    assert "tcp://dask-scheduler:8786" in command_text(worker)


def test_prefect_server_uses_postgres_once_it_is_healthy():
    services = compose()["services"]
    server = services["prefect-server"]
    assert server["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"].startswith("postgresql+asyncpg://")
    assert server["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    assert any(v.endswith(":/var/lib/postgresql/data") for v in services["postgres"]["volumes"])


def test_prefect_worker_serves_the_pool_of_the_process_deployment():
    worker = compose()["services"]["prefect-worker"]
    pool = deployments()["nightly-process"]["work_pool"]["name"]
    text = command_text(worker)
    assert f"prefect work-pool create {pool} --type process" in text
    assert f"prefect worker start --pool {pool}" in text
    assert worker["environment"]["PREFECT_API_URL"] == "http://prefect-server:4200/api"


def test_flow_runner_and_gpu_worker_share_the_data_volumes():
    doc = compose()
    for name in ("prefect-worker", "dask-gpu-worker"):
        mounts = {v.split(":")[1]: v.split(":")[0] for v in doc["services"][name]["volumes"]}
        assert {"/data/inbox", "/data/out"} <= set(mounts), f"{name} lacks a data volume"
        assert all(volume in doc["volumes"] for volume in mounts.values())


def test_docker_deployment_joins_the_stack_network_and_volumes_by_name():
    doc = compose()
    job = deployments()["nightly-docker"]["work_pool"]["job_variables"]
    volume_names = {spec["name"]: key for key, spec in doc["volumes"].items() if spec and "name" in spec}
    for mount in job["volumes"]:
        name, path = mount.split(":")[:2]
        assert name in volume_names, f"nightly-docker mounts {name}, which compose does not name"
        assert f"{volume_names[name]}:{path}" in doc["services"]["prefect-worker"]["volumes"]
    assert set(job["networks"]) <= {net["name"] for net in doc["networks"].values()}
    assert job["image"] == doc["services"]["prefect-worker"]["image"]


@pytest.mark.skipif(
    shutil.which("docker") is None
    or subprocess.run(["docker", "compose", "version"], capture_output=True).returncode != 0,
    reason="the docker compose plugin is not installed",
)
def test_docker_compose_accepts_the_file():
    result = subprocess.run(["docker", "compose", "-f", str(COMPOSE), "config", "-q"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


# ------------------------------------------------------------------------------------------ prefect.yaml


@pytest.mark.parametrize(("path", "name"), ALL_DEPLOYMENTS)
def test_deployment_runs_nightly_in_berlin_time_and_never_overlaps(path, name):
    from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
    from prefect.client.schemas.schedules import CronSchedule

    deployment = deployments(path)[name]
    (schedule,) = deployment["schedules"]
    cron = CronSchedule(cron=schedule["cron"], timezone=schedule["timezone"])
    assert (cron.cron, cron.timezone) == ("0 2 * * *", "Europe/Berlin")
    limit = ConcurrencyLimitConfig.model_validate(deployment["concurrency_limit"])
    assert limit.limit == 1 and limit.collision_strategy is ConcurrencyLimitStrategy.CANCEL_NEW


def test_work_pools_and_a_single_active_schedule():
    both = deployments()
    assert both["nightly-process"]["work_pool"]["name"] == "sceneseg-process"
    assert both["nightly-docker"]["work_pool"]["name"] == "sceneseg-docker"
    # Both read the same inbox: two active schedules would process every scene twice a night.
    active = [name for name, d in both.items() if any(s.get("active", True) for s in d["schedules"])]
    assert active == ["nightly-process"]


def test_workstation_deployments_need_only_the_process_pool_and_take_paths_from_the_environment():
    """`prefect deploy --all` from the repository root registers every deployment of prefect.yaml: none may
    need the Docker pool, and none may carry the stack's container paths or scheduler."""
    workstation = deployments(PREFECT_YAML)
    assert {d["work_pool"]["name"] for d in workstation.values()} == {"sceneseg-process"}
    for name, deployment in workstation.items():
        parameters = deployment["parameters"]
        assert parameters["inbox"] == "{{ $SCENESEG_INBOX }}" and parameters["out_dir"] == "{{ $SCENESEG_OUT }}"
        assert parameters["dask_address"] is None, f"{name}: a workstation runs a local Dask cluster"
        assert parameters["model"] == "buildings-banepa"
        assert "/data/" not in yaml.safe_dump(deployment) and "dask-scheduler" not in yaml.safe_dump(deployment)


def test_cpu_image_holds_both_prefect_files_in_its_working_directory():
    stage = final_stage(DOCKERFILES["cpu"])
    workdir = [args for op, args in stage if op == "WORKDIR"][-1]
    copied = {shlex.split(args)[-1]: shlex.split(args)[0] for op, args in stage if op == "COPY" and "--from" not in args}
    assert copied.get(f"{workdir}/prefect.yaml") == "prefect.yaml"
    assert copied.get(f"{workdir}/docker/prefect.yaml") == "docker/prefect.yaml"


@pytest.mark.parametrize(("path", "name"), ALL_DEPLOYMENTS)
def test_entrypoint_names_a_flow_that_takes_the_deployment_parameters(path, name):
    deployment = deployments(path)[name]
    path, function = deployment["entrypoint"].split(":")
    source = ROOT / path
    if not source.exists():
        pytest.skip(f"{path} is not written yet")
    tree = ast.parse(source.read_text())
    flow_def = next((node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == function), None)
    assert flow_def is not None, f"{path} defines no function {function}"
    decorators = [ast.unparse(d) for d in flow_def.decorator_list]
    assert any(d == "flow" or d.startswith("flow(") for d in decorators), f"{function} is not a @flow"
    args = flow_def.args
    names = [a.arg for a in args.args + args.kwonlyargs]
    required = names[: len(args.args) - len(args.defaults)]
    given = set(deployment["parameters"])
    assert given <= set(names), f"{name} passes {given - set(names)}, which {function} does not take"
    assert set(required) <= given, f"{name} lacks the required parameters {set(required) - given}"


# ------------------------------------------------------------------------------------------ health check


class _Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's naming)
        self.send_response(200 if self.path == "/health" else 503)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def health_server():
    with loopback_server(_Health) as url:
        yield url


def test_healthcheck_passes_on_200_and_fails_on_errors(health_server, capsys):
    healthcheck = load_healthcheck()
    assert healthcheck.main(["--url", f"{health_server}/health", "--import", "json"]) == 0
    assert healthcheck.main(["--url", f"{health_server}/sick"]) == 1
    assert "HTTP 503" in capsys.readouterr().err
    assert healthcheck.main(["--url", "http://127.0.0.1:9/health", "--timeout", "2"]) == 1
    assert healthcheck.main(["--import", "sceneseg_no_such_module"]) == 1
    assert "sceneseg_no_such_module" in capsys.readouterr().err


def test_healthcheck_reports_a_live_dask_worker_with_a_gpu_resource():
    from distributed import LocalCluster

    healthcheck = load_healthcheck()
    with LocalCluster(processes=False, n_workers=1, threads_per_worker=1, resources={"GPU": 1},
                      dashboard_address=":0", worker_dashboard_address=":0") as cluster:
        worker = next(iter(cluster.workers.values()))
        assert worker.state.total_resources == {"GPU": 1}
        assert healthcheck.main(["--url", f"http://127.0.0.1:{worker.http_server.port}/health"]) == 0


def test_healthcheck_cuda_check_agrees_with_torch(monkeypatch):
    import torch

    monkeypatch.setenv("PYTORCH_NVML_BASED_CUDA_CHECK", "1")  # what the check sets, undone afterwards
    assert (load_healthcheck().main(["--cuda"]) == 0) == torch.cuda.is_available()


# ------------------------------------------------------------------------------------------ build backend


def test_build_backend_is_bounded_and_reads_the_license_without_a_warning(tmp_path):
    """What `pip install -e .` runs, without the network: the installed setuptools, inside the bounds the
    project asks for, builds the metadata of a copy of the project; it warns of nothing (a license given as
    a TOML table is deprecated and unsupported from 2027-02-18) and says the license as SPDX."""
    import tomllib
    from importlib.metadata import version

    from packaging.requirements import Requirement

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    (backend,) = [Requirement(r) for r in project["build-system"]["requires"] if r.startswith("setuptools")]
    assert any(spec.operator == "<" for spec in backend.specifier), "the build backend has no upper bound"
    if version("setuptools") not in backend.specifier:
        pytest.skip(f"setuptools {version('setuptools')} is outside {backend.specifier}: install one inside")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, tmp_path / name)
    for package in ("pipeline", "models", "flows"):
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    code = ("import sys; from setuptools import build_meta; "
            "print(build_meta.prepare_metadata_for_build_wheel(sys.argv[1]))")
    (tmp_path / "meta").mkdir()
    done = subprocess.run([sys.executable, "-W", "always", "-c", code, str(tmp_path / "meta")], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Deprecat" not in done.stdout + done.stderr, done.stdout + done.stderr
    metadata = (tmp_path / "meta" / done.stdout.split()[-1] / "METADATA").read_text()
    assert "License-Expression: Apache-2.0" in metadata.splitlines(), metadata[:1000]
