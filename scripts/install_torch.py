"""Install the PyTorch build that fits this machine into the running Python, before sceneseg (``make setup``).

* ``--index-url URL`` (``make setup TORCH_INDEX_URL=...``): that wheel index, whatever the machine has.
* an NVIDIA GPU visible (``nvidia-smi -L`` works): the default index, whose Linux torch is the CUDA build.
* otherwise PyTorch's CPU wheel index, so that pip never pulls gigabytes of CUDA packages; when that index
  cannot be reached (an offline mirror, a proxy), the default index.

``--dry-run`` prints the choice and the pip command instead of running it. Standard library only: it runs
in the fresh virtual environment before anything else is installed.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import urllib.request

#: PyTorch's index of CPU-only wheels.
CPU_INDEX_URL = "https://download.pytorch.org/whl/cpu"
#: Seconds the CPU index may take to answer before the default index is used.
PROBE_TIMEOUT = 5.0


def gpu_visible() -> bool:
    """Whether ``nvidia-smi -L`` runs and lists a GPU (installed without a driver, it exits non-zero)."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return False
    try:
        done = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0 and "GPU" in done.stdout


def reachable(index_url: str, timeout: float = PROBE_TIMEOUT) -> bool:
    """Whether the wheel index answers for torch within ``timeout`` seconds."""
    try:
        with urllib.request.urlopen(f"{index_url.rstrip('/')}/torch/", timeout=timeout) as response:
            return response.status == 200
    except (OSError, ValueError):
        return False


def choose(version: str, index_url: str, cpu_index_url: str) -> tuple[str, list[str]]:
    """Why, and the pip arguments that install torch ``version``."""
    requirement = f"torch=={version}"
    if index_url:
        return f"installing {requirement} from {index_url}", ["install", requirement, "--index-url", index_url]
    if gpu_visible():
        return f"NVIDIA GPU found: installing the CUDA build of {requirement} from the default index", [
            "install", requirement]
    if reachable(cpu_index_url):
        return f"no GPU: installing the CPU build of {requirement} from {cpu_index_url}", [
            "install", requirement, "--index-url", cpu_index_url]
    return (f"no GPU, and {cpu_index_url} cannot be reached: installing {requirement} from the default index "
            "(on PyPI that is the CUDA build; give TORCH_INDEX_URL to choose)"), ["install", requirement]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--version", required=True, help="torch version, e.g. 2.13.0")
    parser.add_argument("--index-url", default="", help="wheel index to install from ('' decides by the machine)")
    parser.add_argument("--cpu-index-url", default=CPU_INDEX_URL, help="PyTorch's CPU wheel index")
    parser.add_argument("--dry-run", action="store_true", help="print the choice and the pip command only")
    args = parser.parse_args(argv)

    why, pip_args = choose(args.version, args.index_url, args.cpu_index_url)
    command = [sys.executable, "-m", "pip", *pip_args, "--quiet"]
    print(why, flush=True)
    if args.dry_run:
        print(" ".join(command))
        return 0
    done = subprocess.run(command)
    if done.returncode != 0 and "--index-url" in pip_args and not args.index_url:
        # The CPU index answered the probe but the download failed: the default index still has torch.
        print(f"{args.cpu_index_url} failed: installing torch=={args.version} from the default index", flush=True)
        done = subprocess.run([sys.executable, "-m", "pip", "install", f"torch=={args.version}", "--quiet"])
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
