#!/bin/bash
# The GPU check of issues 3, 6 and 26, as one script for the device tool (15 minutes a session, all
# tries together; this script stays under 8): drift's torch path (one window: 1,000 x 1,000 x 384,
# 200 permutations, target <= 20 ms), the scanner runtime's tests on cuda, the null-model pipeline
# (bench.scanner_null: can the CPU side feed the GPU?), then bench.scanner on cuda with CUDA graphs:
# runtime against the raw eager bf16 forward (targets: classifier 128-token >= 0.8 of raw and
# >= 15,000 texts/s, MiniLM >= 0.5 of raw, p99 at half load <= 15 ms).
# Prepare with bench/gpu/prepare.sh, then run from the repo root with .gpu carried:
#   bash bench/gpu/check.sh             (about 6-7 minutes on an H200)
#   bash bench/gpu/check.sh --dry-run   (here, on the CPU: the same steps, tiny, to check the script)
# Everything lands in $OUT. Overrides: PY, WHL, SECS, ROUNDS, ONLY, GRAPHS (--cuda-graphs or empty),
# WARDEN_TEST_DEVICE, BENCH_DEVICE, BENCH_TIMEOUT, BENCH_ARGS.
set -u
DRY=0; [ "${1:-}" = "--dry-run" ] && DRY=1
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONWARNINGS=ignore
if [ $DRY = 1 ]; then
  PY=${PY:-.venv/bin/python}; SECS=${SECS:-1}; ROUNDS=${ROUNDS:-1}; ONLY=${ONLY:-classifier/long}
  : "${WARDEN_TEST_DEVICE:=cpu}"; BENCH_DEVICE=${BENCH_DEVICE:-cpu}; BENCH_TIMEOUT=${BENCH_TIMEOUT:-240}
  BENCH_ARGS=${BENCH_ARGS:---concurrency 8 --check-texts 4 --no-int8}; TESTS=${TESTS:-tests/detectors/runtime/test_protocol.py}
  NULL_ARGS="--rounds 1 --seconds 1 --only classifier/chat"
else
  PY=${PY:-python3}; SECS=${SECS:-3}; ROUNDS=${ROUNDS:-2}; ONLY=${ONLY:-classifier/long,embedder/long}
  TESTS=${TESTS:-tests/detectors/runtime tests/drift/test_compare.py}; NULL_ARGS="--rounds 2 --seconds 3"
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site ${WHL:-.gpu/whl}/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
  rm -rf /tmp/minilm && mkdir -p /tmp/minilm && cp -r .gpu/minilm/. /tmp/minilm/ && rm /tmp/minilm/model.fp16.safetensors
  $PY - <<'PYEOF' || exit 1
from safetensors.torch import load_file, save_file
t = load_file(".gpu/minilm/model.fp16.safetensors")
save_file({k: v.float().contiguous() for k, v in t.items()}, "/tmp/minilm/model.safetensors", metadata={"format": "pt"})
PYEOF
  export WARDEN_BENCH_MINILM=/tmp/minilm
fi
GRAPHS=${GRAPHS---cuda-graphs}
{ date -u; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1; nproc
  $PY -c "import torch, transformers, pydantic, tokenizers, msgspec; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name() if torch.cuda.is_available() else '-', 'transformers', transformers.__version__, 'tokenizers', tokenizers.__version__, 'pydantic', pydantic.__version__, 'msgspec', msgspec.__version__)"; } 2>&1 | tee "$OUT/env.txt"
echo "== drift (one window, target <= 20 ms on the GPU)"; timeout 60 $PY -m bench.drift --rounds 3 --json "$OUT/drift.json" 2>&1 | tee "$OUT/drift.log"
echo "== tests on ${WARDEN_TEST_DEVICE:=cuda}"; export WARDEN_TEST_DEVICE
timeout 120 $PY -m pytest -q -p no:cacheprovider -rs $TESTS 2>&1 | tee "$OUT/tests.log"
echo "== scanner null-model pipeline"; timeout 100 $PY -m bench.scanner_null $NULL_ARGS --json "$OUT/scanner_null.json" 2>&1 | tee "$OUT/scanner_null.log"
echo "== scanner bench ${GRAPHS:-eager}"; timeout ${BENCH_TIMEOUT:-200} $PY -m bench.scanner --device ${BENCH_DEVICE:-cuda} --seconds $SECS --rounds $ROUNDS --only $ONLY $GRAPHS --json "$OUT/scanner.json" ${BENCH_ARGS:-} 2>&1 | tee "$OUT/scanner.log"
echo "== done $(date -u)"
