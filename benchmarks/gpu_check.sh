#!/usr/bin/env bash
# GPU check, one GPU, about 10 minutes in all (each step has its own time limit):
#   1. the test suite with DWS_TEST_DEVICE=cuda (tests that take a device run there);
#   2. bench_layers.py and bench_cli.py on cuda;
#   3. adapt / predict-accuracy agreement, CPU vs GPU (max |difference| <= 1e-4).
# Run from anywhere: benchmarks/gpu_check.sh [--device cuda]. With --device cpu every step runs
# on the CPU instead (a check of this script on a machine without a GPU).
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
DEVICE=cuda
if [[ "${1:-}" == "--device" ]]; then DEVICE="$2"; fi
THREADS="${DWS_CHECK_THREADS:-4}"
export OMP_NUM_THREADS="$THREADS" MKL_NUM_THREADS="$THREADS"

if [[ "$DEVICE" == cuda ]]; then
  python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'error: no CUDA device (torch ' + torch.__version__ + ')')"
  python -c "import torch; print('#', torch.cuda.get_device_name(0), 'torch', torch.__version__)"
fi

step() {  # step NAME SECONDS COMMAND...
  local name="$1" seconds="$2"
  shift 2
  echo
  echo "## $name"
  local start=$SECONDS
  timeout "$seconds" "$@"
  echo "($name: $((SECONDS - start)) s)"
}

step "tests (DWS_TEST_DEVICE=$DEVICE)" 300 \
  env DWS_TEST_DEVICE="$DEVICE" python -m pytest -q -p no:cacheprovider -x tests
step "bench_layers ($DEVICE)" 120 \
  python benchmarks/bench_layers.py --device "$DEVICE" --threads "$THREADS" --repeats 7
step "bench_cli ($DEVICE)" 150 \
  python benchmarks/bench_cli.py --device "$DEVICE" --threads "$THREADS" --repeats 1
step "agreement cpu vs $DEVICE" 90 \
  python benchmarks/device_agreement.py --device "$DEVICE"
