#!/bin/bash
# The GPU check of issues 3 and 6, as one script for the device tool (15 minutes a session, all
# tries together): drift's torch path (tests and bench), the scanner runtime's tests on cuda, its own
# IPC ceiling, then bench.scanner on cuda. Prepare with bench/gpu/prepare.sh, then run from the
# repo root with .gpu carried:  bash bench/gpu/check.sh   (about 6 minutes on an H200)
# Everything lands in $OUT. Overrides (for a CPU dry run too): PY, WHL, SECS, ROUNDS, ONLY,
# WARDEN_TEST_DEVICE, BENCH_DEVICE, BENCH_TIMEOUT, BENCH_ARGS.
set -u
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONWARNINGS=ignore
PY=${PY:-python3}
SECS=${SECS:-3}; ROUNDS=${ROUNDS:-2}; ONLY=${ONLY:-classifier/long,embedder/long,classifier/chat,embedder/chat}
$PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site ${WHL:-.gpu/whl}/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD
rm -rf /tmp/minilm && mkdir -p /tmp/minilm && cp -r .gpu/minilm/. /tmp/minilm/ && rm /tmp/minilm/model.fp16.safetensors
$PY - <<'PYEOF' || exit 1
from safetensors.torch import load_file, save_file
t = load_file(".gpu/minilm/model.fp16.safetensors")
save_file({k: v.float().contiguous() for k, v in t.items()}, "/tmp/minilm/model.safetensors", metadata={"format": "pt"})
PYEOF
export WARDEN_BENCH_MINILM=/tmp/minilm
{ date -u; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1; nproc
  $PY -c "import torch, transformers, pydantic, tokenizers; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name() if torch.cuda.is_available() else '-', 'transformers', transformers.__version__, 'tokenizers', tokenizers.__version__, 'pydantic', pydantic.__version__)"; } 2>&1 | tee "$OUT/env.txt"
echo "== drift"; timeout 120 $PY -m bench.drift --rounds 7 --json "$OUT/drift.json" 2>&1 | tee "$OUT/drift.log"
echo "== tests on ${WARDEN_TEST_DEVICE:=cuda}"; export WARDEN_TEST_DEVICE
timeout 240 $PY -m pytest -q -p no:cacheprovider -rs tests/detectors/runtime tests/drift/test_compare.py 2>&1 | tee "$OUT/tests.log"
echo "== scanner IPC ceiling"; timeout 90 $PY -m bench.scanner_ipc --rounds 2 --seconds 3 --json "$OUT/scanner_ipc.json" 2>&1 | tee "$OUT/scanner_ipc.log"
echo "== scanner bench"; timeout ${BENCH_TIMEOUT:-330} $PY -m bench.scanner --device ${BENCH_DEVICE:-cuda} --seconds $SECS --rounds $ROUNDS --only $ONLY --json "$OUT/scanner.json" ${BENCH_ARGS:-} 2>&1 | tee "$OUT/scanner.log"
echo "== done $(date -u)"
