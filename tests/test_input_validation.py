"""Bad input over real HTTP on a real `gatehouse serve`: each gets a 400 that names its
field (a body over the size limit a 413, before it is read), and nothing is stored."""

from __future__ import annotations

import base64
import contextlib
import socket
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from simulators.platform import with_mandatory
from tests.conftest import unique
from tests.devices import new_device
from tests.server import API, Api, Gatehouse, Reply

Body = dict[str, Any]
DEFAULT_MAX_BODY = 8 * 1024 * 1024  # the API body limit by default (README)


def post_raw(
    gatehouse: Gatehouse, resource: str, action: str, content: bytes, **query: Any
) -> Reply:
    """POST bytes as they are (a body too deep for json.dumps, say)."""
    api = gatehouse.client()
    params = {"action": action, "orgId": gatehouse.org_id, **query}
    headers = {"content-type": "application/json"}
    response = api.http.post(f"{API}/{resource}", params=params, content=content, headers=headers)
    return Reply(response.status_code, response.json())


def refused(reply: Reply, field: str) -> None:
    assert (reply.status, reply.code) == (400, 99400), reply
    assert field in reply.msg, reply


def total(api: Api, resource: str, **query: Any) -> int:
    count: int = api(resource, "list", pageSize=1000, **query).body["pagination"]["totalSize"]
    return count


def device_body(product_key: str, **fields: Any) -> Body:
    return {"productKey": product_key, "deviceName": unique("d"), "timezone": "+08:00", **fields}


# ---------------------------------------------------------------- a trailing newline


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("deviceKey", "abcd\n"),
        ("timezone", "+08:00\n"),
        ("deviceSecret", "abcdefgh\n"),
        ("productKey", "{pk}\n"),
    ],
)
def test_a_trailing_newline_is_refused_in_a_device(
    api: Api, make_product: Callable[..., str], field: str, value: str
) -> None:
    product = make_product()
    reply = api("devices", "create", device_body(product, **{field: value.format(pk=product)}))
    refused(reply, field)
    assert total(api, "devices", productKey=product) == 0


@pytest.mark.parametrize(
    ("field", "value"),
    [("productKey", "abcd\n"), ("productSecret", "abcdefgh\n"), ("modelId", "{model}\n")],
)
def test_a_trailing_newline_is_refused_in_a_product(
    api: Api, model_id: str, field: str, value: str
) -> None:
    before = total(api, "products")
    body = {"productName": unique("p"), "modelId": model_id, field: value.format(model=model_id)}
    refused(api("products", "create", with_mandatory(body)), field)
    assert total(api, "products") == before


def test_a_trailing_newline_is_refused_in_a_thing_model(api: Api) -> None:
    model = unique("m")
    refused(api("thing-models", "create", {"modelId": f"{model}\n", "tsl": {}}), "modelId")
    tsl = {"properties": [{"identifier": "temp\n", "dataType": {"type": "int"}}]}
    refused(api("thing-models", "create", {"modelId": model, "tsl": tsl}), "identifier")
    for stored in (model, f"{model}\n"):
        assert api("thing-models", "get", modelId=stored).status == 404


def test_a_trailing_newline_is_refused_in_a_binding(
    api: Api, make_product: Callable[..., str]
) -> None:
    device = new_device(api, make_product())
    query = {"productKey": device["productKey"], "deviceKey": device["deviceKey"]}
    refused(api("bindings", "bind", {"userId": "alice\n"}, **query), "userId")
    assert api("bindings", "list", **query).data == []


# ---------------------------------------------------------------- numbers out of range


@pytest.mark.parametrize(
    ("query", "body"),
    [
        ({"pageNo": "10000000000000000", "pageSize": "1000"}, None),
        ({"pageNo": "99999999999999999999999"}, None),
        ({}, {"pagination": {"pageNo": 1e16, "pageSize": 1000}}),
        ({}, {"pagination": {"pageNo": 1e300}}),
        ({}, {"pagination": {"pageNo": 1.5}}),
    ],
)
@pytest.mark.parametrize("resource", ["products", "thing-models", "statistics"])
def test_a_page_number_out_of_range_is_refused(
    api: Api, resource: str, query: dict[str, str], body: Body | None
) -> None:
    refused(api(resource, "list", body, **query), "pageNo")


def test_a_page_number_out_of_range_is_refused_for_devices(
    api: Api, make_product: Callable[..., str]
) -> None:
    product = make_product()
    for action in ("list", "exportCredentials"):
        reply = api(
            "devices", action, productKey=product, pageNo="10000000000000000", pageSize=1000
        )
        refused(reply, "pageNo")


# ---------------------------------------------------------------- JSON nested too deep


def nested(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


def test_device_attributes_nested_1000_deep_are_refused(
    gatehouse: Gatehouse, api: Api, make_product: Callable[..., str]
) -> None:
    product = make_product()
    head = orjson.dumps(device_body(product))[:-1]
    reply = post_raw(
        gatehouse, "devices", "create", head + b',"deviceAttributes":' + nested(1000) + b"}"
    )
    refused(reply, "deviceAttributes")
    assert total(api, "devices", productKey=product) == 0

    device = new_device(api, product, deviceAttributes={"floor": 3})
    query = {"productKey": product, "deviceKey": device["deviceKey"]}
    body = b'{"deviceAttributes":' + nested(1000) + b"}"
    refused(post_raw(gatehouse, "devices", "update", body, **query), "deviceAttributes")
    assert api("devices", "get", **query).data["deviceAttributes"] == {"floor": 3}


@pytest.mark.parametrize(
    ("resource", "action", "field"),
    [
        ("device-certificates", "revoke", "certSN"),
        ("device-certificates", "renew", "certSN"),
        ("commands", "setMeasurepoint", "measurepoints"),
        ("thing-models", "create", "tsl"),
    ],
)
def test_any_field_nested_too_deep_is_refused(
    gatehouse: Gatehouse,
    api: Api,
    make_product: Callable[..., str],
    resource: str,
    action: str,
    field: str,
) -> None:
    device = new_device(api, make_product(biDirectionalAuth=True))
    query = {"productKey": device["productKey"], "deviceKey": device["deviceKey"]}
    body = (
        b'{"modelId":"'
        + unique("m").encode()
        + b'","'
        + field.encode()
        + b'":'
        + nested(300)
        + b"}"
    )
    refused(post_raw(gatehouse, resource, action, body, **query), field)


# ---------------------------------------------------------------- weak certificate keys


PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def csr_for(key: PrivateKey) -> str:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "device")])
    csr = x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def test_only_the_platforms_key_types_get_a_certificate(
    api: Api, make_product: Callable[..., str]
) -> None:
    device = new_device(api, make_product(biDirectionalAuth=True))
    query = {"productKey": device["productKey"], "deviceKey": device["deviceKey"]}
    weak: dict[str, PrivateKey] = {
        "P-192": ec.generate_private_key(ec.SECP192R1()),
        "secp256k1": ec.generate_private_key(ec.SECP256K1()),
        "P-521": ec.generate_private_key(ec.SECP521R1()),
        "RSA-1024": rsa.generate_private_key(65537, 1024),
    }
    for name, key in weak.items():
        reply = api("device-certificates", "apply", {"csr": csr_for(key)}, **query)
        refused(reply, "csr")
        assert "P-256" in reply.msg and "2048" in reply.msg, (name, reply)
    assert api("device-certificates", "list", **query).data == []
    strong: list[PrivateKey] = [
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP384R1()),
        rsa.generate_private_key(65537, 2048),
    ]
    for key in strong:
        api("device-certificates", "apply", {"csr": csr_for(key)}, **query).ok()
    assert len(api("device-certificates", "list", **query).data) == 3


# ---------------------------------------------------------------- other bad bodies


def test_bad_bodies_and_queries_never_answer_500(
    api: Api, make_product: Callable[..., str]
) -> None:
    """A table of bad input found by probing every action; each is a 400 naming its field."""
    device = new_device(api, make_product(biDirectionalAuth=True))
    gateway = new_device(api, make_product(deviceType="gateway"))
    query = {"productKey": device["productKey"], "deviceKey": device["deviceKey"]}
    at_gateway = {"productKey": gateway["productKey"], "deviceKey": gateway["deviceKey"]}
    cases: list[tuple[str, str, Any, dict[str, Any], str]] = [
        (
            "device-topos",
            "addSubDevice",
            {"subDevices": [{"productKey": [1], "deviceKey": {}}]},
            at_gateway,
            "productKey",
        ),
        (
            "device-topos",
            "addSubDevice",
            {"subDevices": [{"assetId": [1, 2]}]},
            at_gateway,
            "assetId",
        ),
        (
            "device-topos",
            "deleteSubDevice",
            {"subDevices": [{"productKey": 1, "deviceKey": 2}]},
            at_gateway,
            "productKey",
        ),
        ("device-certificates", "revoke", {"certSN": {"a": [1]}}, query, "certSN"),
        ("device-certificates", "renew", {"certSN": [1, 2]}, query, "certSN"),
        ("device-certificates", "apply", {"csr": "x", "validDay": 1e300}, query, "validDay"),
        ("devices", "listMessages", None, {**query, "limit": "1e400"}, "limit"),
        (
            "commands",
            "setMeasurepoint",
            {"measurepoints": {"temp": 1}},
            {**query, "timeout": "nan"},
            "timeout",
        ),
        (
            "commands",
            "setMeasurepoint",
            {"measurepoints": {"temp": 1}},
            {**query, "pendingTtl": "inf"},
            "pendingTtl",
        ),
        (
            "commands",
            "sendRaw",
            {"payloadBase64": base64.b64encode(b"x").decode()},
            {**query, "timeout": "-1"},
            "timeout",
        ),
        ("bindings", "bind", {"userId": ["alice"]}, query, "userId"),
        (
            "products",
            "create",
            with_mandatory(
                {
                    "productName": "p",
                    "modelId": "m",
                    "specifiedGateway": {"enabled": True, "gatewayProductKeys": ["pk\n"]},
                }
            ),
            {},
            "gatewayProductKeys",
        ),
    ]
    for resource, action, body, where, field in cases:
        reply = api(resource, action, body, **where)
        assert reply.status != 500, (resource, action, body, reply)
        refused(reply, field)


# ---------------------------------------------------------------- the body size limit


def raw_request(gatehouse: Gatehouse, head: str, send: Callable[[socket.socket], None]) -> bytes:
    """Send a request's head, then whatever `send` sends; the server's whole answer."""
    with socket.create_connection(("127.0.0.1", gatehouse.http_port), timeout=10) as sock:
        sock.sendall(head.encode())
        # The server may answer and close before we are done: what we want.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            send(sock)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
            if b"\r\n\r\n" in answer and answer.rstrip().endswith(b"}"):
                break
        return answer


def request_head(gatehouse: Gatehouse, length: str) -> str:
    auth = base64.b64encode(f"{gatehouse.access_key}:{gatehouse.access_secret}".encode()).decode()
    return (
        f"POST {API}/devices?action=batchCreate HTTP/1.1\r\n"
        f"Host: 127.0.0.1\r\nAuthorization: Basic {auth}\r\n"
        f"Content-Type: application/json\r\n{length}\r\n"
    )


def too_large(answer: bytes) -> None:
    status, _, rest = answer.partition(b"\r\n")
    assert status.startswith(b"HTTP/1.1 413"), answer[:300]
    envelope = orjson.loads(rest.partition(b"\r\n\r\n")[2])
    assert envelope["code"] == 99413 and envelope["data"] is None
    assert f"{DEFAULT_MAX_BODY} bytes" in envelope["msg"] and "--max-api-body" in envelope["msg"]


def test_a_body_declared_too_large_is_refused_before_it_is_read(gatehouse: Gatehouse) -> None:
    # 300 MB announced, 1 KB sent: the answer comes without waiting for the rest.
    head = request_head(gatehouse, "Content-Length: 300000000\r\n")
    too_large(raw_request(gatehouse, head, lambda sock: sock.sendall(b"[" * 1024)))


def test_a_chunked_body_is_refused_once_it_passes_the_limit(gatehouse: Gatehouse) -> None:
    sent = 0

    def stream(sock: socket.socket) -> None:
        nonlocal sent
        chunk = b"x" * 65536
        while sent < 4 * DEFAULT_MAX_BODY:
            sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            sent += len(chunk)

    head = request_head(gatehouse, "Transfer-Encoding: chunked\r\n")
    too_large(raw_request(gatehouse, head, stream))
    assert sent < 2 * DEFAULT_MAX_BODY  # refused while streaming, not after all of it


def test_a_10000_device_batch_fits_under_the_default_limit(
    api: Api, make_product: Callable[..., str]
) -> None:
    product = make_product()
    devices = [
        device_body(
            product,
            deviceKey=f"meter-{i:06d}",
            deviceSecret=f"secret{i:018d}",
            deviceName={"defaultValue": f"Meter {i}", "i18nValue": {"zh_CN": f"电表 {i}"}},
            deviceDesc="a meter on the third floor",
            deviceAttributes={"floor": 3, "room": f"R{i % 400}"},
            deviceTags={"site": "north"},
        )
        for i in range(10_000)
    ]
    body = orjson.dumps({"deviceList": devices})
    assert 2_000_000 < len(body) < DEFAULT_MAX_BODY / 2  # about 2.6 MB: room to spare
    assert len(api("devices", "batchCreate", {"deviceList": devices}).data) == 10_000


def test_the_limit_is_configurable(new_gatehouse: Callable[..., Gatehouse]) -> None:
    server = new_gatehouse(None, "--max-api-body", "1000")
    api = server.client()
    big = api("organizations", "get", {"padding": "x" * 1000})
    assert (big.status, big.code) == (413, 99413) and "1000 bytes" in big.msg, big
    assert api("organizations", "get", {"padding": "x" * 900}).ok()["orgId"] == server.org_id
