"""The thing-model validator, as pure logic."""

from __future__ import annotations

from typing import Any

import pytest

from registry import InvalidArgument, compile_model
from tests.conftest import THERMOSTAT_TSL


def prop(identifier: str, kind: str, specs: Any = None, mode: str = "rw") -> dict[str, Any]:
    return {
        "identifier": identifier,
        "accessMode": mode,
        "dataType": {"type": kind, "specs": specs if specs is not None else {}},
    }


def messages(model: Any, values: dict[str, Any]) -> list[str]:
    return [str(v) for v in model.check_properties(values)]


def test_values_within_the_model_pass() -> None:
    model = compile_model(THERMOSTAT_TSL)
    assert model.check_properties({"temp": 21.5, "target": 20, "mode": 1}) == []
    assert model.check_event("overheat", {"temp": 99.0}) == []
    assert model.check_service_input("reboot", {"delay": 3}) == []
    assert model.check_service_output("reboot", {"ok": True}) == []


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"temp": 121}, "temp: 121 is above max 120"),
        ({"temp": -41.5}, "temp: -41.5 is below min -40"),
        ({"temp": "hot"}, "temp: expected float, got text 'hot'"),
        ({"temp": True}, "temp: expected float, got bool true"),
        ({"temp": None}, "temp: expected float, got null"),
        ({"target": 20.5}, "target: expected int, got 20.5"),
        ({"mode": 3}, "mode: 3 is not one of the enum values 0, 1, 2"),
        ({"humidity": 3}, "humidity: not defined in the thing model"),
    ],
)
def test_each_fault_is_named(values: dict[str, Any], expected: str) -> None:
    assert messages(compile_model(THERMOSTAT_TSL), values) == [expected]


def test_every_fault_in_one_message_is_reported() -> None:
    found = messages(compile_model(THERMOSTAT_TSL), {"temp": 500, "mode": 9, "target": 10})
    assert found == ["temp: 500 is above max 120", "mode: 9 is not one of the enum values 0, 1, 2"]


def test_bool_text_date() -> None:
    model = compile_model(
        {
            "properties": [
                prop("on", "bool", {"0": "off", "1": "on"}),
                prop("label", "text", {"length": "5"}),
                prop("when", "date"),
            ]
        }
    )
    assert messages(model, {"on": True, "label": "abc", "when": 1700000000000}) == []
    assert messages(model, {"on": 1, "when": "1700000000000"}) == []
    assert messages(model, {"on": 2}) == ["on: expected bool (true/false or 0/1), got 2"]
    assert messages(model, {"label": "abcdef"}) == ["label: text of 6 characters is longer than 5"]
    assert messages(model, {"when": -1}) == ["when: expected a date as UTC milliseconds, got -1"]


def test_struct_and_array() -> None:
    point = [
        {"identifier": "x", "dataType": {"type": "int", "specs": {"min": "0", "max": "9"}}},
        {"identifier": "y", "dataType": {"type": "int", "specs": {}}},
    ]
    model = compile_model(
        {
            "properties": [
                prop("pos", "struct", point),
                prop("path", "array", {"size": "2", "item": {"type": "struct", "specs": point}}),
                prop("levels", "array", {"size": "3", "item": {"type": "double"}}),
            ]
        }
    )
    assert messages(model, {"pos": {"x": 1, "y": 2}, "levels": [1, 2.5]}) == []
    assert messages(model, {"pos": {"x": 10, "y": 2}}) == ["pos: x: 10 is above max 9"]
    assert messages(model, {"pos": {"x": 1}}) == ["pos: y: is missing"]
    assert messages(model, {"pos": {"x": 1, "y": 1, "z": 0}}) == [
        "pos: z: not defined in the thing model"
    ]
    assert messages(model, {"pos": [1, 2]}) == ["pos: expected struct (a JSON object), got list"]
    assert messages(model, {"levels": [1, 2, 3, 4]}) == [
        "levels: array of 4 items is longer than 3"
    ]
    assert messages(model, {"path": [{"x": 1, "y": 1}, {"x": "a", "y": 1}]}) == [
        "path: item 1: x: expected int, got text 'a'"
    ]


def test_events_and_services_that_do_not_exist() -> None:
    model = compile_model(THERMOSTAT_TSL)
    assert [str(v) for v in model.check_event("fire", {})] == [
        "fire: is not an event of the thing model"
    ]
    assert [str(v) for v in model.check_service_input("explode", {})] == [
        "explode: is not a service of the thing model"
    ]


def test_writable_properties() -> None:
    model = compile_model(THERMOSTAT_TSL)
    assert model.check_writable({"target": 21}) == []
    assert [str(v) for v in model.check_writable({"temp": 20.0})] == ["temp: is read-only"]


@pytest.mark.parametrize(
    ("tsl", "fault"),
    [
        ([], "tsl must be a JSON object"),
        ({"properties": [prop("a", "float", {"min": "5", "max": "1"})]}, "min 5 is above"),
        ({"properties": [prop("a", "int", {"min": "low"})]}, "specs.min must be a number"),
        ({"properties": [prop("a", "int", {"step": "0"})]}, "specs.step must be above 0"),
        ({"properties": [prop("a", "enum", {})]}, "enum specs must map"),
        ({"properties": [prop("a", "enum", {"x": "y"})]}, "enum values must be whole numbers"),
        ({"properties": [prop("a", "text", {"length": "0"})]}, "specs.length must be 1 to"),
        ({"properties": [prop("a", "array", {"size": "3"})]}, "array specs need"),
        ({"properties": [prop("a", "struct", [])]}, "struct specs must be a non-empty list"),
        ({"properties": [prop("a", "money")]}, "tsl.properties.0.dataType.type"),
        ({"properties": [prop("9a", "int")]}, "must be 1 to 50 letters"),
        ({"properties": [prop("a", "int"), prop("a", "int")]}, "'a' appears twice"),
        ({"events": [{"identifier": "e", "type": "panic"}]}, "tsl.events.0.type"),
    ],
)
def test_bad_models_are_refused_with_the_place(tsl: Any, fault: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        compile_model(tsl)
    assert fault in caught.value.msg
