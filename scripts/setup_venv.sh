#!/usr/bin/env bash
# Create (or reuse) ./.venv and install MedFusion into it, editable. Usage: scripts/setup_venv.sh [EXTRAS]
# e.g. `scripts/setup_venv.sh test`. Re-running is cheap: nothing is reinstalled unless pyproject.toml changed.
#
# torch is installed first and pinned (TORCH_SPEC, default torch==2.13.0): on our machines that resolves to
# the CPU wheel on disk; an unpinned `torch` would pull several GB of CUDA packages.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
python="${PYTHON:-python3}"
torch_spec="${TORCH_SPEC:-torch==2.13.0}"

if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv with $($python --version)"
    "$python" -m venv .venv
fi
stamp=".venv/.medfusion-installed-${extras:-base}"
wanted="$(sha256sum pyproject.toml | cut -d' ' -f1) $torch_spec"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$wanted" ]; then
    exit 0
fi
.venv/bin/python -m pip install --quiet --upgrade pip
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
    echo "setup: installing $torch_spec"
    .venv/bin/python -m pip install --quiet "$torch_spec"
fi
target="."
[ -n "$extras" ] && target=".[$extras]"
echo "setup: installing MedFusion ($target)"
.venv/bin/python -m pip install --quiet -e "$target"
echo "$wanted" > "$stamp"
