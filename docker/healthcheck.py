"""Container health check without curl: HTTP endpoints that must answer 200, imports, a CUDA device.

Exits 0 when every check passes and 1 otherwise, printing why to stderr (``docker inspect`` shows it)::

    python healthcheck.py --url http://127.0.0.1:8789/health --cuda     # GPU Dask worker
    python healthcheck.py --url http://127.0.0.1:8787/health            # Dask scheduler
    python healthcheck.py --url http://127.0.0.1:8080/health            # Prefect worker --with-healthcheck
    python healthcheck.py --import flows.cli                            # the image can run sceneseg
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import urllib.error
import urllib.request

__all__ = ["check_url", "check_import", "check_cuda", "main"]


def check_url(url: str, timeout: float = 5.0) -> str | None:
    """None when ``url`` answers HTTP 200 within ``timeout`` seconds, else what went wrong."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (URLs come from the image)
            if response.status != 200:
                return f"{url} answered HTTP {response.status}"
    except urllib.error.HTTPError as exc:
        return f"{url} answered HTTP {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        return f"{url} is not reachable: {getattr(exc, 'reason', exc)}"
    return None


def check_import(module: str) -> str | None:
    """None when ``module`` imports, else the error."""
    try:
        importlib.import_module(module)
    except Exception as exc:  # any import failure makes the container useless
        return f"import {module} failed: {type(exc).__name__}: {exc}"
    return None


def check_cuda() -> str | None:
    """None when torch sees a CUDA device, else why not."""
    # Ask NVML rather than initialising CUDA: the check runs every 30 s beside the worker's own context.
    os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")
    import torch

    if not torch.cuda.is_available():
        return (f"torch {torch.__version__} (CUDA build {torch.version.cuda}) sees no CUDA device: "
                "run the container with the NVIDIA Container Toolkit and a GPU reservation")
    return None


def main(argv: list[str] | None = None) -> int:
    """Run the requested checks; 0 when all pass."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", action="append", default=[], help="HTTP endpoint that must answer 200.")
    parser.add_argument("--import", dest="modules", action="append", default=[], help="Module that must import.")
    parser.add_argument("--cuda", action="store_true", help="torch must see a CUDA device.")
    parser.add_argument("--timeout", type=float, default=5.0, help="Seconds per HTTP request.")
    args = parser.parse_args(argv)
    if not (args.url or args.modules or args.cuda):
        parser.error("nothing to check: give --url, --import or --cuda")
    problems = [check_url(url, args.timeout) for url in args.url]
    problems += [check_import(module) for module in args.modules]
    if args.cuda:
        problems.append(check_cuda())
    problems = [p for p in problems if p]
    for problem in problems:
        print(f"unhealthy: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
