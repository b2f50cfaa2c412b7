#!/usr/bin/env bash
# The GPU check for a lent CUDA machine, in one command: set up (the CUDA build of torch where an NVIDIA GPU
# is visible, see the Makefile), run the CUDA tests, then bench/gpu.py, whose one JSON object is the last
# thing printed on stdout. Everything else goes to stderr. Under 8 minutes on an H100/H200.
#
#   bash bench/gpu.sh              # the real run
#   bash bench/gpu.sh --dry-run    # a tiny CPU run of the same steps (the test suite runs it)
#
# PYTHON names an interpreter that already has sceneseg's dependencies (a machine without network, say);
# without it the Makefile's .venv is set up and used.
set -euo pipefail
cd "$(dirname "$0")/.."

dry_run=0
if [ "${1:-}" = "--dry-run" ]; then
  dry_run=1
  shift
fi

if [ -n "${PYTHON:-}" ]; then
  py="$PYTHON"
else
  make setup >&2
  py=.venv/bin/python
fi

if [ "$dry_run" = 1 ]; then
  echo "dry run: skipping the CUDA tests" >&2
  exec "$py" bench/gpu.py --dry-run --no-record "$@"
fi

"$py" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'torch sees no CUDA device: install the CUDA build (README, Install)')" >&2
"$py" -m pytest -q -p no:cacheprovider tests/test_cuda.py >&2
exec "$py" bench/gpu.py "$@"
