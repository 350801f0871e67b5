"""Detector types: the declared registry that turns one `detectors:` entry of the config into a Detector.

Why it lives in `detectors/` and not in the proxy's policy settings: a detector type is the
scanning library's seam. A plugin is written against this package only (the Detector protocol,
the scanner client, the options base below), so its author never imports the proxy, and the
arrow stays proxy -> detectors: the proxy's policy settings validate their `detectors:` list
through `DetectorTypes.validate`, and its chain builder builds each entry through
`DetectorTypes.build`.

The built-in types are declared in detectors/builtin_types.py. Any other type comes from an
installed distribution's entry point in the group `warden.detectors`, whose name is the type
and whose value is a `DetectorType`. Entry points are read only for a type that is not built
in, and each time, with no cache: a cache would be module state, and the config is validated
only at start and on reload, where reading installed distributions' metadata costs milliseconds.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from types import MappingProxyType
from typing import Any, ClassVar, Generic, Literal, TypeVar, get_args

from pydantic import BaseModel, ConfigDict, Field

from detectors.base import Detector, Direction
from detectors.runtime.client import ScannerClient

ENTRY_POINT_GROUP = "warden.detectors"


class DetectorOptions(BaseModel):
    """The keys every `detectors:` entry has; each type's options model adds its own keys.

    Keys that belong to no option of the entry's type are refused, so a typo fails at start.
    `needs_scanner` says whether the type runs a scanner task: config checks use it to refuse a
    scanner-less deployment and a task no scanner model provides.
    """

    model_config = ConfigDict(extra="forbid")
    needs_scanner: ClassVar[bool] = False

    name: str
    type: str = Field(description="the detector type: a built-in one or a plugin's (entry point group "
                      f"{ENTRY_POINT_GROUP})")
    directions: list[Direction] = ["request", "response"]  # pydantic copies a default per instance
    on_error: Literal["open", "closed"] = Field(
        "open", description="when it cannot answer: open lets the text through (counted), closed blocks it"
    )
    timeout_s: float = Field(2.0, gt=0)

    @property
    def scanner_task(self) -> str | None:
        return None


class ScannerTaskOptions(DetectorOptions):
    """Options of a type that runs a model task of the scanner process (`scanner.models[].task`)."""

    needs_scanner: ClassVar[bool] = True

    task: str = Field(description="the scanner task (one of scanner.models[].task)")

    @property
    def scanner_task(self) -> str:
        return self.task


OptionsT = TypeVar("OptionsT", bound=DetectorOptions)
Factory = Callable[[OptionsT, ScannerClient | None], Awaitable[Detector]]


class DetectorTypeError(ValueError):
    """A detector type that is unknown, or a plugin that cannot serve as one.

    A ValueError, so that pydantic reports it at the entry's path like any other bad value.
    """


@dataclass(frozen=True)
class DetectorType(Generic[OptionsT]):
    """One detector type: its name in the config, the model its entries are validated by, its factory.

    `build(options, scanner)` gets the scanner client, or None when the scanner is off; a type
    whose options say `needs_scanner` is never built without one.
    """

    name: str
    options: type[OptionsT]
    build: Factory[OptionsT]

    def __post_init__(self) -> None:
        # Checked here because a plugin's declaration is only typed where its author runs mypy.
        if not (isinstance(self.options, type) and issubclass(self.options, DetectorOptions)):
            raise DetectorTypeError(f"detector type {self.name!r}: options must subclass "
                                    "detectors.registry.DetectorOptions")
        if get_args(self.options.model_fields["type"].annotation) != (self.name,):
            raise DetectorTypeError(f"detector type {self.name!r}: its options must declare "
                                    f"`type: Literal[{self.name!r}]`")
        if self.options.needs_scanner and not issubclass(self.options, ScannerTaskOptions):
            raise DetectorTypeError(f"detector type {self.name!r} needs the scanner: its options must subclass "
                                    "detectors.registry.ScannerTaskOptions (which adds `task`)")

    @property
    def needs_scanner(self) -> bool:
        return self.options.needs_scanner

    async def create(self, options: DetectorOptions, scanner: ScannerClient | None) -> Detector:
        if not isinstance(options, self.options):
            raise TypeError(f"detector {options.name!r}: {type(options).__name__} are not {self.name} options")
        if self.needs_scanner and scanner is None:
            raise RuntimeError(f"detector {options.name!r} needs the scanner, which is not running")
        return await self.build(options, scanner)


class DetectorTypes:
    """The built-in types and the plugins installed where this process runs.

    `validate_builtin` validates an entry of a built-in type (the built-ins' discriminated union,
    so its errors name the type); a plugin's entry is validated by the plugin's own options model.
    """

    def __init__(self, builtins: Iterable[DetectorType[Any]], validate_builtin: Callable[[Any], DetectorOptions],
                 group: str = ENTRY_POINT_GROUP) -> None:
        self._builtins: Mapping[str, DetectorType[Any]] = MappingProxyType({t.name: t for t in builtins})
        self._validate_builtin = validate_builtin
        self._group = group

    def names(self) -> list[str]:
        """Every type an entry may name: the built-ins, then the installed plugins."""
        plugins = {ep.name for ep in entry_points(group=self._group)} - set(self._builtins)
        return [*sorted(self._builtins), *sorted(plugins)]

    def resolve(self, name: object) -> DetectorType[Any]:
        if isinstance(name, str) and name in self._builtins:
            return self._builtins[name]
        found = list(entry_points(group=self._group, name=name)) if isinstance(name, str) else []
        if not found:
            raise DetectorTypeError(f"unknown detector type {name!r}; known types: {', '.join(self.names())} "
                                    f"(plugins register in the entry point group {self._group!r})")
        if len(found) > 1:
            raise DetectorTypeError(f"detector type {name!r} is declared by several installed distributions: "
                                    f"{', '.join(sorted(_origin(ep) for ep in found))}")
        return self._load(found[0])

    def _load(self, entry: EntryPoint) -> DetectorType[Any]:
        try:
            loaded = entry.load()
        except Exception as exc:  # whatever a plugin's import raises, the config check must say which plugin
            raise DetectorTypeError(f"detector type {entry.name!r} ({_origin(entry)}) could not be loaded: "
                                    f"{type(exc).__name__}: {exc}") from exc
        if not isinstance(loaded, DetectorType):
            raise DetectorTypeError(f"detector type {entry.name!r} ({_origin(entry)}) is a "
                                    f"{type(loaded).__name__}, not a detectors.registry.DetectorType")
        if loaded.name != entry.name:
            raise DetectorTypeError(f"entry point {entry.name!r} ({_origin(entry)}) declares a detector type "
                                    f"named {loaded.name!r}; the two names must be equal")
        return loaded

    def validate(self, entry: object) -> DetectorOptions:
        if isinstance(entry, DetectorOptions):
            return entry
        if not isinstance(entry, Mapping):
            raise DetectorTypeError("a detector entry is a mapping with at least `name` and `type`")
        if "type" not in entry:
            raise DetectorTypeError(f"a detector entry needs a `type`; known types: {', '.join(self.names())}")
        kind = entry["type"]
        if isinstance(kind, str) and kind in self._builtins:
            return self._validate_builtin(entry)
        options: DetectorOptions = self.resolve(kind).options.model_validate(entry)
        return options

    async def build(self, options: DetectorOptions, scanner: ScannerClient | None) -> Detector:
        return await self.resolve(options.type).create(options, scanner)


def _origin(entry: EntryPoint) -> str:
    dist = entry.dist.name if entry.dist is not None else "unknown distribution"
    return f"{entry.value} in {dist}"
