#!/usr/bin/env bash
# The main job on a built-in default: set up .venv, generate the CT/MR head phantom (different grids), fuse it,
# and write phantom_ct/mr, fused, edges and preview.png into ./medfusion-demo/. Extra arguments go to
# `medfusion demo` (e.g. --method gff, --out DIR, --device cuda).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_venv.sh
exec .venv/bin/medfusion demo --out medfusion-demo "$@"
