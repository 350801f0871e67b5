"""Scanner model kinds: the declared map from a model's `kind:` to the loader that builds its runner.

A loader imports its own module only when a model of its kind is configured: most of them pull in
torch, transformers, detoxify or presidio, which a scanner without such a model never pays for.
The map sits above every loader and nothing below imports it, so a kind's module (toxicity.py,
pii.py) can share the transformers runner in hf.py without an import circle.
`ModelKind` in settings.py names the same kinds for config validation; a test keeps both equal.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType

from detectors.runtime.runner import Runner
from detectors.runtime.settings import ModelKind, ModelSettings

Loader = Callable[[ModelSettings], Runner]


def _transformers(settings: ModelSettings) -> Runner:
    from detectors.runtime.hf import load_hf_runner

    return load_hf_runner(settings)


def _detoxify(settings: ModelSettings) -> Runner:
    from detectors.toxicity import load_detoxify_runner

    return load_detoxify_runner(settings)


def _toxic_bilstm(settings: ModelSettings) -> Runner:
    from detectors.toxicity import load_bilstm_runner

    return load_bilstm_runner(settings)


def _pii(settings: ModelSettings) -> Runner:
    from detectors.pii import load_pii_runner

    return load_pii_runner(settings)


MODEL_KINDS: Mapping[ModelKind, Loader] = MappingProxyType({
    "classifier": _transformers,
    "embedder": _transformers,
    "detoxify": _detoxify,
    "toxic_bilstm": _toxic_bilstm,
    "pii": _pii,
})


def load_runner(settings: ModelSettings) -> Runner:
    loader = MODEL_KINDS.get(settings.kind)
    if loader is None:
        raise ValueError(f"unknown model kind {settings.kind!r} (kinds: {', '.join(sorted(MODEL_KINDS))})")
    return loader(settings)
