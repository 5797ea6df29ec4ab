#!/usr/bin/env bash
# Opt-in test target: run sharpen's veRL tests inside `.venv-verl` (build it once with scripts/verl/make_env.sh).
set -euo pipefail
VENV_DIR="${1:-.venv-verl}"
if [ ! -x "$VENV_DIR/bin/pytest" ]; then
    echo "no $VENV_DIR: run  bash scripts/verl/make_env.sh $VENV_DIR  first" >&2
    exit 2
fi
"$VENV_DIR/bin/pytest" -q -p no:cacheprovider tests/sharpen/integrations/test_verl_env.py tests/sharpen/integrations/test_verl_on_cpu.py \
    tests/sharpen/integrations/test_verl_probes_on_cpu.py tests/sharpen/integrations/test_verl_recipe_on_cpu.py
