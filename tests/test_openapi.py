"""The typed API: `/openapi.json` is a valid OpenAPI document that describes every
action, the envelope and Basic auth; schemathesis fuzzes the live server against it
(no 5xx, every answer as documented); unknown routes answer in the EnOS envelope; and
Swagger UI at `/docs` needs nothing from outside."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
from openapi_spec_validator import validate

from tests.server import Api, Gatehouse

PREFIX = "/connect-service/v2.1"


def document(gatehouse: Gatehouse) -> dict[str, Any]:
    answer = httpx.get(f"{gatehouse.url}/openapi.json", timeout=10)
    assert answer.status_code == 200
    found: dict[str, Any] = answer.json()
    return found


def refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"]} if isinstance(node.get("$ref"), str) else set()
        return found.union(*(refs(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(refs(v) for v in node))
    return set()


def test_the_document_is_valid_and_describes_every_action(gatehouse: Gatehouse) -> None:
    doc = document(gatehouse)
    validate(doc)  # openapi-spec-validator: raises on an invalid document
    schemas = doc["components"]["schemas"]
    for target in refs(doc):
        assert target.startswith("#/components/schemas/"), target
        assert target.rsplit("/", 1)[1] in schemas, f"dangling {target}"
    assert doc["components"]["securitySchemes"]["basicAuth"] == {
        "type": "http",
        "scheme": "basic",
        "description": "your access key and access secret",
    }
    assert doc["security"] == [{"basicAuth": []}]
    devices = doc["paths"][f"{PREFIX}/devices"]["post"]
    params = {p["name"]: p for p in devices["parameters"]}
    assert "getLatest" in params["action"]["schema"]["enum"]
    assert {"productKey", "deviceKey", "assetId", "since", "kinds"} <= set(params)
    listed = devices["x-actions"]["listMessages"]
    assert schemas[listed["data"]["$ref"].rsplit("/", 1)[1]]["items"] == {
        "$ref": "#/components/schemas/LogEntry"
    }
    create = devices["x-actions"]["create"]["body"]["$ref"].rsplit("/", 1)[1]
    assert schemas[create] == {"$ref": "#/components/schemas/DeviceCreate"}
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            codes = set(operation["responses"])
            assert "422" not in codes, (path, method)
            assert {"400", "401", "500"} <= codes, (path, method)
            if path.startswith(PREFIX) and method == "post":
                ok = operation["responses"]["200"]["content"]["application/json"]["schema"]
                assert ok["allOf"] == [{"$ref": "#/components/schemas/Envelope"}]


def test_schemathesis_finds_no_server_error_and_no_undocumented_answer(
    gatehouse: Gatehouse, tmp_path: Path
) -> None:
    # Bounded: a few examples per operation, one worker, a fixed seed, no shrinking.
    checks = ",".join(
        (
            "not_a_server_error",
            "status_code_conformance",
            "content_type_conformance",
            "response_schema_conformance",
        )
    )
    command = [
        str(Path(sys.executable).with_name("st")),
        "run",
        f"{gatehouse.url}/openapi.json",
        "--checks",
        checks,
        "--auth",
        f"{gatehouse.access_key}:{gatehouse.access_secret}",
        "--max-examples",
        "2",
        "--phases",
        "fuzzing",
        "--seed",
        "18",
        "--no-shrink",
        "--workers",
        "1",
        "--request-timeout",
        "10",
        "--exclude-path",
        f"{PREFIX}/stream",  # an endless response: test_sse.py covers it
        "--report-dir",
        str(tmp_path),
    ]
    run = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]


def test_unknown_routes_and_methods_answer_in_the_envelope(gatehouse: Gatehouse, api: Api) -> None:
    auth = (gatehouse.access_key, gatehouse.access_secret)
    missing = httpx.post(f"{gatehouse.url}{PREFIX}/nonsense?action=list", auth=auth)
    assert missing.status_code == 404
    body = missing.json()
    assert body["code"] == 99404 and body["data"] is None and "detail" not in body
    assert "nonsense" in body["msg"] and body["requestId"]
    wrong_method = httpx.get(f"{gatehouse.url}{PREFIX}/devices?action=list", auth=auth)
    assert wrong_method.status_code == 405
    assert wrong_method.json()["code"] == 99405
    assert "POST" in wrong_method.headers["allow"]
    unknown = api("devices", "frobnicate")
    assert (unknown.status, unknown.code) == (400, 99400)
    assert "getLatest" in unknown.msg


def test_swagger_ui_loads_nothing_from_outside(gatehouse: Gatehouse) -> None:
    page = httpx.get(f"{gatehouse.url}/docs", timeout=10)
    assert page.status_code == 200
    html = page.text
    assert "SwaggerUIBundle" in html
    assert not re.findall(r"""(?:src|href)=["']?(?:https?:)?//""", html), html
    assert "validatorUrl" in html and "null" in html.split("validatorUrl", 1)[1][:10]
    for asset in re.findall(r"""(?:src|href)=["']([^"']+)["']""", html):
        loaded = httpx.get(f"{gatehouse.url}{asset}", timeout=10)
        assert loaded.status_code == 200, asset
        assert len(loaded.content) > 1000 or asset.endswith(".png"), asset
    bundle = httpx.get(f"{gatehouse.url}/docs/assets/swagger-ui-bundle.js", timeout=10)
    assert bundle.headers["content-type"].startswith("text/javascript")
    assert b"SwaggerUIBundle" in bundle.content
    assert httpx.get(f"{gatehouse.url}/docs/assets/..%2Fconsts.py").status_code == 404
