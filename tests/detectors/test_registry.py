"""Detector types: the built-ins, a plugin found through a real entry point, and the errors a config gets."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal, get_args

import pytest
from pydantic import BaseModel, ValidationError

from detectors.builtin_types import (
    BUILTIN_TYPES,
    BuiltinOptions,
    LeakageOptions,
    PatternsOptions,
    ScannerOptions,
    SimilarityOptions,
    detector_types,
)
from detectors.registry import (
    ENTRY_POINT_GROUP,
    DetectorOptions,
    DetectorType,
    DetectorTypeError,
    ScannerTaskOptions,
)
from detectors.runtime.client import ScannerClient
from tests.detectors.plugin_dist import SHOUTING_MODULE, installed_plugin

SHOUTING_ENTRY = f"[{ENTRY_POINT_GROUP}]\nshouting = warden_shouting:SHOUTING\n"


@pytest.fixture
def shouting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    with installed_plugin(tmp_path, monkeypatch, "warden_shouting", SHOUTING_MODULE, SHOUTING_ENTRY):
        yield


def test_the_builtin_union_and_the_declared_types_agree() -> None:
    union, _discriminator = get_args(BuiltinOptions)
    assert set(get_args(union)) == {t.options for t in BUILTIN_TYPES}
    assert [t.name for t in BUILTIN_TYPES if t.needs_scanner] == ["scanner", "similarity"]


def test_builtin_entries_keep_their_keys_and_defaults() -> None:
    types = detector_types()
    leak = types.validate({"name": "leak", "type": "leakage", "ngram": 4})
    similar = types.validate({"name": "s", "type": "similarity", "task": "embed", "directions": ["request"],
                              "report_min": 0.5})
    pii = types.validate({"name": "pii", "type": "scanner", "task": "pii", "on_error": "closed", "timeout_s": 2})
    secrets = types.validate({"name": "secrets", "type": "patterns", "canaries": ["zebra"]})
    assert isinstance(leak, LeakageOptions) and leak.ngram == 4 and leak.scanner_task is None
    assert isinstance(similar, SimilarityOptions) and similar.scanner_task == "embed" and similar.needs_scanner
    assert similar.directions == ["request"] and similar.exemplars_file is None and similar.report_min == 0.5
    assert isinstance(pii, ScannerOptions) and pii.on_error == "closed" and pii.timeout_s == 2
    assert isinstance(secrets, PatternsOptions) and secrets.secrets and secrets.canaries == ["zebra"]
    assert not secrets.needs_scanner and secrets.directions == ["request", "response"] and secrets.on_error == "open"


def test_builtin_errors_name_the_type_and_the_key() -> None:
    types = detector_types()
    with pytest.raises(ValidationError, match=r"scanner\.task\n  Field required"):
        types.validate({"name": "tox", "type": "scanner"})
    with pytest.raises(ValidationError, match=r"patterns\.ngram\n  Extra inputs are not permitted"):
        types.validate({"name": "secrets", "type": "patterns", "ngram": 3})


def test_an_unknown_type_is_refused_with_the_known_ones() -> None:
    types = detector_types()
    with pytest.raises(DetectorTypeError) as caught:
        types.validate({"name": "x", "type": "nonesuch"})
    message = str(caught.value)
    assert "unknown detector type 'nonesuch'" in message
    assert "known types: injection_rules, leakage, patterns, scanner, similarity" in message
    assert ENTRY_POINT_GROUP in message
    with pytest.raises(DetectorTypeError, match="needs a `type`; known types: injection_rules"):
        types.validate({"name": "x"})


def test_a_plugin_type_is_found_through_its_entry_point_validated_by_its_model_and_built(shouting: None) -> None:
    types = detector_types()
    assert types.names()[-1] == "shouting"
    options = types.validate({"name": "caps", "type": "shouting", "min_letters": 4, "directions": ["request"]})
    assert type(options).__name__ == "ShoutingOptions" and options.type == "shouting"
    assert options.directions == ["request"] and not options.needs_scanner
    with pytest.raises(ValidationError, match="min_letters"):
        types.validate({"name": "caps", "type": "shouting", "min_letters": 0})
    with pytest.raises(ValidationError, match="task"):
        types.validate({"name": "caps", "type": "shouting", "task": "pii"})
    with pytest.raises(DetectorTypeError, match=r"known types: injection_rules, .*, similarity, shouting"):
        types.validate({"name": "x", "type": "whispering"})


async def test_a_plugin_detector_is_built_and_scans(shouting: None) -> None:
    types = detector_types()
    options = types.validate({"name": "caps", "type": "shouting", "min_letters": 4})
    detector = await types.build(options, None)
    assert detector.name == "caps" and detector.directions == frozenset({"request", "response"})
    found = await detector.detect(["STOP SHOUTING", "Fine, thanks", "OK"])
    assert [[f.label for f in row] for row in found] == [["SHOUTING"], [], []]


@pytest.mark.parametrize(("entry", "error"), [
    ("warden_bad_plugin:NOT_A_TYPE", r"is a str, not a detectors\.registry\.DetectorType"),
    ("warden_bad_plugin:MISNAMED", "declares a detector type named 'other'"),
    ("warden_bad_plugin:MISSING", "could not be loaded: AttributeError"),
])
def test_a_broken_plugin_is_named_in_the_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, entry: str,
                                                error: str) -> None:
    source = SHOUTING_MODULE.replace('"shouting"', '"other"') + "\nNOT_A_TYPE = 'shouting'\nMISNAMED = SHOUTING\n"
    plugin = installed_plugin(tmp_path, monkeypatch, "warden_bad_plugin", source,
                              f"[{ENTRY_POINT_GROUP}]\nbroken = {entry}\n")
    with plugin, pytest.raises(DetectorTypeError, match=rf"'broken' \(warden_bad_plugin:.*{error}"):
        detector_types().validate({"name": "x", "type": "broken"})


def test_a_type_declaration_is_checked() -> None:
    class Loose(DetectorOptions):
        pass

    class Needy(DetectorOptions):
        type: Literal["needy"]
        needs_scanner: ClassVar[bool] = True  # but no `task` for the config checks to verify

    async def build(options: Any, scanner: ScannerClient | None) -> Any:
        raise AssertionError

    with pytest.raises(DetectorTypeError, match=r"must declare `type: Literal\['loose'\]`"):
        DetectorType("loose", Loose, build)
    with pytest.raises(DetectorTypeError, match=r"options must subclass detectors\.registry\.DetectorOptions"):
        DetectorType("model", BaseModel, build)  # type: ignore[type-var]
    with pytest.raises(DetectorTypeError, match=r"must subclass detectors\.registry\.ScannerTaskOptions"):
        DetectorType("needy", Needy, build)
    assert issubclass(ScannerOptions, ScannerTaskOptions)


async def test_a_scanner_type_is_not_built_without_the_scanner() -> None:
    types = detector_types()
    options = types.validate({"name": "tox", "type": "scanner", "task": "toxicity"})
    with pytest.raises(RuntimeError, match="needs the scanner, which is not running"):
        await types.build(options, None)
