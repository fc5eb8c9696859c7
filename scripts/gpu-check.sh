#!/usr/bin/env bash
# The GPU check, for a session that borrows a CUDA machine for a few minutes (book/running.md).
#
#   (a) the unit tests and the hostile-input suite, on CUDA as well as the CPU;
#   (b) every registered benchmark at its short sizes on CUDA (`--short`: the first and last CUDA
#       size of each, SDPA's flash kernel as the attention reference, achieved bandwidth against the
#       card's peak for the memory-bound kernels), written to benchmarks/results/<gpu>.json. Peers
#       and data that are not on that machine (transformers and the MiniLM weights, POT, infomap,
#       entropy-estimators unless .whl/ brings them) leave their rows skipped, with the reason.
#
# That machine has python3 with torch, pytest, pytest-xdist, hypothesis, sympy, scipy and matplotlib,
# no network and no make set-up: this script creates no virtual environment and installs nothing
# from an index. kexue runs from PYTHONPATH=src; the benchmark peers travel as wheels in .whl/
# (`make gpu-wheels` downloads them here) and are installed into a folder under /tmp.
# Without CUDA it says so and exits 0; KEXUE_GPU_CHECK_ON_CPU=1 runs it all on the CPU anyway (the
# benchmarks at their quick sizes, outside benchmarks/results), to test this script where there is
# no GPU. Budget: under 5 minutes in all.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

if ! "$PY" -c 'import torch' 2> /dev/null; then
    echo "gpu-check: $PY cannot import torch: nothing was run."
    exit 1
fi
BENCH=(--short --device cuda)
if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    if [ "${KEXUE_GPU_CHECK_ON_CPU:-0}" != 1 ]; then
        echo "gpu-check: no CUDA device on this machine: skipped (nothing was run)."
        exit 0
    fi
    echo "gpu-check: no CUDA device; running on the CPU as asked (KEXUE_GPU_CHECK_ON_CPU=1)"
    BENCH=(--quick --device cpu)
fi

SITE=/tmp/kexue-gpu-site
if compgen -G ".whl/*.whl" > /dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$SITE" .whl/*.whl || { echo "gpu-check: installing .whl/ failed"; exit 1; }
else
    echo "gpu-check: no .whl/ folder: the benchmarks run without their peers"
fi
export PYTHONPATH="src:.:$SITE" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
"$PY" -c 'import torch; print("torch", torch.__version__, "on", torch.cuda.get_device_name())'

status=0
echo "== (a) unit and hostile-input tests, CPU and CUDA"
# --confcutdir=tests: the repository's conftest.py (the chapters' nbval plugin, which needs
# jupytext and nbval) is not loaded; tests/book needs them too and is left out.
timeout 180 "$PY" -m pytest -q -p no:cacheprovider --confcutdir=tests -n "${JOBS:-8}" tests \
    --ignore=tests/html --ignore=tests/book -W ignore::DeprecationWarning || status=1

echo "== (b) benchmarks: ${BENCH[*]}"
timeout 150 "$PY" -m benchmarks "${BENCH[@]}" || status=1

echo "gpu-check: $([ $status = 0 ] && echo passed || echo FAILED)"
exit $status
