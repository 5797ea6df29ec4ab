#!/usr/bin/env bash
# Opt-in portability check: the README's test suite under other CPU kernels and thread counts.
#
# torch picks its CPU kernels at start-up (AVX-512, AVX2 or plain); ATEN_CPU_CAPABILITY forces a choice, which
# changes the bits of every float result as another CPU would. A test that passes under each of these, and with
# one and two torch threads, asserts something about the method and not about one machine's arithmetic.
#
#   bash scripts/check_portability.sh            # five full runs of the suite (about 15 min on 2 idle cores)
#   bash scripts/check_portability.sh -x -q      # extra arguments go to pytest
set -uo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-.venv/bin/python}  # PYTHON=... to test another environment
[ -x "$py" ] || { echo "check_portability: run the README's test set-up first ($py missing)" >&2; exit 2; }
status=0
run() {  # label, then env assignments
    local label=$1; shift
    local start=$SECONDS
    if env "$@" "$py" -m pytest -q -p no:cacheprovider "${extra[@]}" > "/tmp/sharpen-portability-$label.log" 2>&1; then
        echo "PASS  $label  ($((SECONDS - start)) s)  $(tail -n 1 "/tmp/sharpen-portability-$label.log")"
    else
        echo "FAIL  $label  ($((SECONDS - start)) s)  see /tmp/sharpen-portability-$label.log"
        grep -E '^(FAILED|ERROR)' "/tmp/sharpen-portability-$label.log" | head -n 20
        status=1
    fi
}
extra=("$@")
run kernels-plain    ATEN_CPU_CAPABILITY=default OMP_NUM_THREADS=1
run kernels-avx2     ATEN_CPU_CAPABILITY=avx2 OMP_NUM_THREADS=1
run threads-2        -u ATEN_CPU_CAPABILITY OMP_NUM_THREADS=2 SHARPEN_TEST_TORCH_THREADS=2
run threads-2-plain  ATEN_CPU_CAPABILITY=default OMP_NUM_THREADS=2 SHARPEN_TEST_TORCH_THREADS=2
run kernels-best     -u ATEN_CPU_CAPABILITY OMP_NUM_THREADS=1
exit $status
