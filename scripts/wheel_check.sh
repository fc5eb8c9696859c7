#!/usr/bin/env bash
# `make wheel-check`, or `bash scripts/wheel_check.sh [PYTHON]`: the wheel stands alone. Builds the
# sdist and, from it, the wheel; checks what both contain (scripts/dist_checks.py); installs the wheel
# into a fresh virtual environment outside the repository, with its dependencies at the pinned versions
# (-c requirements.txt) and nothing else; and there, from a folder outside the repository, imports every
# module and calls one function per part on the CPU (scripts/wheel_smoke.py). Everything is made in a
# temporary folder and removed.
#
# No network for the build: --no-isolation builds with the setuptools and wheel pinned in .venv (an
# isolated build would download setuptools into a build environment). The dependencies come from
# pip's configured sources: torch from the local wheel (find-links), the rest from the package index
# or pip's cache, as `make setup` gets them. The environment is not compiled to bytecode (--no-compile:
# torch's thousands of modules would take longer to compile than the check takes to run).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
python=${1:-.venv/bin/python}  # the python of the book's environment (make passes $(BIN)/python)
# The environment is about 1 GB, mostly torch. In memory (/dev/shm, where it has room and TMPDIR is
# not set) it is written and removed in seconds; on a disk mounted with `discard`, as on CI's
# machines, removing it alone takes a minute.
base=${TMPDIR:-/tmp}
if [ -z "${TMPDIR:-}" ] && [ -d /dev/shm ] && [ -w /dev/shm ] &&
    [ "$(df -Pk /dev/shm | awk 'NR == 2 {print $4}')" -gt 3000000 ]; then
    base=/dev/shm
fi
work=$(mktemp -d "$base/kexue-wheel.XXXXXX")
trap 'rm -rf "$work"' EXIT
start=$SECONDS

# Run a step quietly, with its output in a log that is shown only when the step fails.
step() {
    local name=$1 began=$SECONDS
    shift
    if ! "$@" >"$work/$name.log" 2>&1; then
        cat "$work/$name.log"
        echo "wheel-check: $name failed" >&2
        exit 1
    fi
    echo "wheel-check: $name ($((SECONDS - began)) s)"
}

step build "$python" -m build --no-isolation --outdir "$work/dist" .
"$python" scripts/dist_checks.py "$work/dist"
wheel=$(ls "$work"/dist/*.whl)
step venv "$python" -m venv --without-pip "$work/venv"
step install "$python" -m pip --python "$work/venv/bin/python" install --no-compile \
    --constraint requirements.txt "$wheel"
echo "wheel-check: the environment holds $("$python" -m pip --python "$work/venv/bin/python" \
    list --format=freeze 2>/dev/null | tr '\n' ' ')"
# Outside the repository, isolated (-I: no PYTHONPATH, no user site, not the script's folder).
mkdir "$work/elsewhere"
(cd "$work/elsewhere" && "$work/venv/bin/python" -I "$repo/scripts/wheel_smoke.py" "$repo")
rm -rf "$work/venv"
echo "wheel-check: passed in $((SECONDS - start)) s (in $base, the environment removed)"
