"""Thing models (TSL) in the Alink JSON shape, and the validator compiled from them.

A model is parsed once (pydantic, with every spec checked) and compiled into plain
closures, one per identifier, so that checking a message on the router's hot path is
a dict lookup and a few comparisons: no pydantic, no re-parsing of specs.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from registry.errors import InvalidArgument

IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,49}")  # matched whole (fullmatch)
TEXT_MAX = 10240
ARRAY_MAX = 512

TypeName = Literal["int", "float", "double", "bool", "enum", "text", "date", "struct", "array"]


def _check_identifier(value: str) -> str:
    if not IDENTIFIER.fullmatch(value):
        raise ValueError(
            f"identifier {value!r} must be 1 to 50 letters, digits or '_',"
            " not starting with a digit"
        )
    return value


Identifier = Annotated[str, AfterValidator(_check_identifier)]


class DataType(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: TypeName
    specs: Any = Field(default_factory=dict)


class Param(BaseModel):
    """A member of a struct, an event's output or a service's input/output."""

    model_config = ConfigDict(extra="allow")
    identifier: Identifier
    name: str = ""
    dataType: DataType


class Property(Param):
    accessMode: Literal["r", "rw", "w"] = "rw"
    required: bool = False


class Event(BaseModel):
    model_config = ConfigDict(extra="allow")
    identifier: Identifier
    name: str = ""
    type: Literal["info", "alert", "error"] = "info"
    outputData: list[Param] = Field(default_factory=list)


class Service(BaseModel):
    model_config = ConfigDict(extra="allow")
    identifier: Identifier
    name: str = ""
    callType: Literal["sync", "async"] = "async"
    inputData: list[Param] = Field(default_factory=list)
    outputData: list[Param] = Field(default_factory=list)


class ThingModelDoc(BaseModel):
    """The TSL document itself: `properties`, `events`, `services`."""

    model_config = ConfigDict(extra="allow")
    properties: list[Property] = Field(default_factory=list)
    events: list[Event] = Field(default_factory=list)
    services: list[Service] = Field(default_factory=list)


# --------------------------------------------------------------------------- compile

Checker = Callable[[Any], str | None]
"""Returns None when the value fits, otherwise what is wrong with it."""


@dataclass(frozen=True, slots=True)
class Violation:
    identifier: Identifier
    message: str

    def __str__(self) -> str:
        return f"{self.identifier}: {self.message}"


def _number(spec: Mapping[str, Any], key: str, where: str) -> float | None:
    raw = spec.get(key)
    if raw is None or raw == "":
        return None
    try:
        return float(raw)
    except (TypeError, ValueError):
        raise InvalidArgument(f"{where}: specs.{key} must be a number, got {raw!r}") from None


def _positive_int(spec: Mapping[str, Any], key: str, where: str, default: int, cap: int) -> int:
    raw = spec.get(key, default)
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise InvalidArgument(f"{where}: specs.{key} must be a whole number, got {raw!r}") from None
    if not 1 <= value <= cap:
        raise InvalidArgument(f"{where}: specs.{key} must be 1 to {cap}, got {value}")
    return value


def _range_checker(kind: str, specs: Any, where: str) -> Checker:
    spec = specs if isinstance(specs, Mapping) else {}
    low = _number(spec, "min", where)
    high = _number(spec, "max", where)
    step = _number(spec, "step", where)
    if low is not None and high is not None and low > high:
        raise InvalidArgument(f"{where}: specs.min {low:g} is above specs.max {high:g}")
    if step is not None and step <= 0:
        raise InvalidArgument(f"{where}: specs.step must be above 0, got {step:g}")
    integral = kind == "int"

    def check(value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"expected {kind}, got {_describe(value)}"
        if integral and not isinstance(value, int):
            return f"expected int, got {value!r}"
        if low is not None and value < low:
            return f"{value!r} is below min {low:g}"
        if high is not None and value > high:
            return f"{value!r} is above max {high:g}"
        return None

    return check


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"bool {str(value).lower()}"
    if isinstance(value, str):
        return f"text {value[:40]!r}"
    return type(value).__name__ if not isinstance(value, int | float) else repr(value)


def _bool_checker() -> Checker:
    def check(value: Any) -> str | None:
        if isinstance(value, bool) or (isinstance(value, int) and value in (0, 1)):
            return None
        return f"expected bool (true/false or 0/1), got {_describe(value)}"

    return check


def _enum_checker(specs: Any, where: str) -> Checker:
    if not isinstance(specs, Mapping) or not specs:
        raise InvalidArgument(f"{where}: enum specs must map each value to its name")
    try:
        allowed = frozenset(int(key) for key in specs)
    except ValueError:
        raise InvalidArgument(f"{where}: enum values must be whole numbers") from None
    shown = ", ".join(str(v) for v in sorted(allowed))

    def check(value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, int) or value not in allowed:
            return f"{_describe(value)} is not one of the enum values {shown}"
        return None

    return check


def _text_checker(specs: Any, where: str) -> Checker:
    spec = specs if isinstance(specs, Mapping) else {}
    limit = _positive_int(spec, "length", where, TEXT_MAX, TEXT_MAX)

    def check(value: Any) -> str | None:
        if not isinstance(value, str):
            return f"expected text, got {_describe(value)}"
        if len(value) > limit:
            return f"text of {len(value)} characters is longer than {limit}"
        return None

    return check


def _date_checker() -> Checker:
    def check(value: Any) -> str | None:
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return None
        if isinstance(value, str) and value.isdigit():
            return None
        return f"expected a date as UTC milliseconds, got {_describe(value)}"

    return check


def _struct_checker(specs: Any, where: str) -> Checker:
    if not isinstance(specs, list) or not specs:
        raise InvalidArgument(f"{where}: struct specs must be a non-empty list of members")
    try:
        members = [Param.model_validate(member) for member in specs]
    except ValidationError as exc:
        raise InvalidArgument(f"{where}: {_first_error(exc)}") from None
    if any(m.dataType.type == "struct" for m in members):
        raise InvalidArgument(f"{where}: a struct may not contain a struct")
    fields = _compile_params(members, where)

    def check(value: Any) -> str | None:
        if not isinstance(value, dict):
            return f"expected struct (a JSON object), got {_describe(value)}"
        problems = check_params(fields, value, require_all=True)
        return "; ".join(str(p) for p in problems) if problems else None

    return check


def _array_checker(specs: Any, where: str) -> Checker:
    if not isinstance(specs, Mapping) or "item" not in specs:
        raise InvalidArgument(f"{where}: array specs need 'size' and 'item'")
    size = _positive_int(specs, "size", where, ARRAY_MAX, ARRAY_MAX)
    try:
        item_type = DataType.model_validate(specs["item"])
    except ValidationError as exc:
        raise InvalidArgument(f"{where}: array item: {_first_error(exc)}") from None
    if item_type.type not in ("int", "float", "double", "text", "struct"):
        raise InvalidArgument(f"{where}: array items may be int, float, double, text or struct")
    item = compile_data_type(item_type, f"{where}[]")

    def check(value: Any) -> str | None:
        if not isinstance(value, list):
            return f"expected array, got {_describe(value)}"
        if len(value) > size:
            return f"array of {len(value)} items is longer than {size}"
        for index, element in enumerate(value):
            problem = item(element)
            if problem is not None:
                return f"item {index}: {problem}"
        return None

    return check


def compile_data_type(data_type: DataType, where: str) -> Checker:
    """Turn one `dataType` into a checker, raising InvalidArgument for a bad spec."""
    kind = data_type.type
    if kind in ("int", "float", "double"):
        return _range_checker(kind, data_type.specs, where)
    if kind == "bool":
        return _bool_checker()
    if kind == "enum":
        return _enum_checker(data_type.specs, where)
    if kind == "text":
        return _text_checker(data_type.specs, where)
    if kind == "date":
        return _date_checker()
    if kind == "struct":
        return _struct_checker(data_type.specs, where)
    return _array_checker(data_type.specs, where)


def _compile_params(params: Sequence[Param], where: str) -> dict[str, Checker]:
    compiled: dict[str, Checker] = {}
    for param in params:
        if param.identifier in compiled:
            raise InvalidArgument(f"{where}: identifier {param.identifier!r} appears twice")
        compiled[param.identifier] = compile_data_type(
            param.dataType, f"{where}.{param.identifier}"
        )
    return compiled


def check_params(
    fields: Mapping[str, Checker], values: Mapping[str, Any], *, require_all: bool = False
) -> list[Violation]:
    """Check each value against its field; unknown identifiers are violations too."""
    problems: list[Violation] = []
    for identifier, value in values.items():
        checker = fields.get(identifier)
        if checker is None:
            problems.append(Violation(identifier, "not defined in the thing model"))
            continue
        problem = checker(value)
        if problem is not None:
            problems.append(Violation(identifier, problem))
    if require_all:
        problems.extend(Violation(i, "is missing") for i in fields if i not in values)
    return problems


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    location = ".".join(str(part) for part in error["loc"])
    return f"{location}: {error['msg']}" if location else str(error["msg"])


@dataclass(frozen=True, slots=True)
class CompiledModel:
    """A thing model ready for the hot path."""

    properties: Mapping[str, Checker]
    writable: frozenset[str]
    events: Mapping[str, Mapping[str, Checker]]
    service_inputs: Mapping[str, Mapping[str, Checker]]
    service_outputs: Mapping[str, Mapping[str, Checker]]

    def check_properties(self, values: Mapping[str, Any]) -> list[Violation]:
        return check_params(self.properties, values)

    def check_writable(self, values: Mapping[str, Any]) -> list[Violation]:
        problems = [
            Violation(i, "is read-only")
            for i in values
            if i in self.properties and i not in self.writable
        ]
        return problems + check_params(self.properties, values)

    def check_event(self, identifier: str, values: Mapping[str, Any]) -> list[Violation]:
        fields = self.events.get(identifier)
        if fields is None:
            return [Violation(identifier, "is not an event of the thing model")]
        return check_params(fields, values)

    def check_service_input(self, identifier: str, values: Mapping[str, Any]) -> list[Violation]:
        fields = self.service_inputs.get(identifier)
        if fields is None:
            return [Violation(identifier, "is not a service of the thing model")]
        return check_params(fields, values)

    def check_service_output(self, identifier: str, values: Mapping[str, Any]) -> list[Violation]:
        fields = self.service_outputs.get(identifier)
        if fields is None:
            return [Violation(identifier, "is not a service of the thing model")]
        return check_params(fields, values)


def parse_model(tsl: Any) -> ThingModelDoc:
    """Parse a TSL document, raising InvalidArgument that names the faulty place."""
    if not isinstance(tsl, Mapping):
        raise InvalidArgument("tsl must be a JSON object with properties, events and services")
    try:
        return ThingModelDoc.model_validate(tsl)
    except ValidationError as exc:
        raise InvalidArgument(f"tsl.{_first_error(exc)}") from None


def compile_model(tsl: Any) -> CompiledModel:
    """Parse and compile a TSL document; every spec fault is an InvalidArgument."""
    doc = parse_model(tsl)
    properties = _compile_params(doc.properties, "properties")
    writable = frozenset(p.identifier for p in doc.properties if "w" in p.accessMode)
    events: dict[str, dict[str, Checker]] = {}
    for event in doc.events:
        if event.identifier in events:
            raise InvalidArgument(f"events: identifier {event.identifier!r} appears twice")
        events[event.identifier] = _compile_params(event.outputData, f"events.{event.identifier}")
    inputs: dict[str, dict[str, Checker]] = {}
    outputs: dict[str, dict[str, Checker]] = {}
    for service in doc.services:
        if service.identifier in inputs:
            raise InvalidArgument(f"services: identifier {service.identifier!r} appears twice")
        where = f"services.{service.identifier}"
        inputs[service.identifier] = _compile_params(service.inputData, f"{where}.inputData")
        outputs[service.identifier] = _compile_params(service.outputData, f"{where}.outputData")
    return CompiledModel(properties, writable, events, inputs, outputs)
