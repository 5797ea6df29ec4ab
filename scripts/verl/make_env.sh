#!/usr/bin/env bash
# Build the opt-in veRL environment `.venv-verl` (CPU is enough for what the tests need).
#
# veRL 0.9.1 pins transformers < 5.11 and tensordict <= 0.10, so it cannot share `.venv` (transformers 5.24).
# cachetools, uvicorn, fastapi: veRL 0.9.1 imports them (rollout router/server) without declaring them; vLLM brings them on GPU.
# torch is installed first, from the CPU build, so that veRL's resolver keeps it instead of pulling CUDA wheels.
#
# Usage (from the repository root):   bash scripts/verl/make_env.sh [VENV_DIR]
# Then:                               VENV_DIR/bin/pytest tests/sharpen/integrations -m verl
set -euo pipefail

VENV_DIR="${1:-.venv-verl}"
PYTHON="${PYTHON:-python3.11}"
VERL_VERSION="0.9.1"   # keep equal to sharpen.integrations.verl.SUPPORTED_VERL

"$PYTHON" -m venv "$VENV_DIR"
"$VENV_DIR/bin/pip" install --upgrade pip
# On this project's machines pip's find-links hold the 2.13.0+cpu wheel, which sorts above PyPI's CUDA 2.13.0;
# elsewhere add: --index-url https://download.pytorch.org/whl/cpu
"$VENV_DIR/bin/pip" install "torch==2.13.0"
"$VENV_DIR/bin/python" -c "import torch; assert '+cpu' in torch.__version__ or not torch.version.cuda, torch.__version__"
"$VENV_DIR/bin/pip" install "verl==${VERL_VERSION}" "transformers>=5.5.3,<5.11" pandas pyarrow pytest hypothesis cachetools uvicorn fastapi
# sharpen itself, without letting its own requirements move veRL's pins
"$VENV_DIR/bin/pip" install --no-deps -e .
"$VENV_DIR/bin/pip" install numpy scipy safetensors tqdm
"$VENV_DIR/bin/python" - <<'PY'
import importlib.metadata as md
for pkg in ("verl", "torch", "transformers", "tensordict", "hydra-core", "ray"):
    print(f"{pkg}=={md.version(pkg)}")
import verl.trainer.main_ppo  # noqa: F401  (imports on CPU)
print("verl imports")
PY
