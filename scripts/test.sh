#!/usr/bin/env bash
# Set up .venv with the test extras and run the whole pytest suite. Extra arguments go to pytest.
# The tests read real data from ../shared/data; with CI=true, missing data fails instead of skipping.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_venv.sh test
exec .venv/bin/python -m pytest -q "$@"
