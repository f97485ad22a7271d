"""The dialect objects (broker/protocol/dialects/): pure, so tested without a broker.
Each answers what the broker asks of a connection's dialect; the end-to-end behaviour
is in test_alink.py, test_linkkit.py and the EnOS tests."""

from __future__ import annotations

import hashlib
import hmac

import orjson
import pytest

from broker.protocol import (
    ClientIdError,
    Uplink,
    codes,
    enos_connect_params,
    enos_sign,
    parse_enos_client_id,
    sign_matches,
)
from broker.protocol.dialects import (
    ALINK,
    DIALECTS,
    ENOS,
    NAMES,
    ConnectSecrets,
    Dialect,
    ExpectedSign,
    GatewayFunction,
    SignProblem,
    dialect_named,
    dialect_of,
)

NOW_MS = 1_700_000_000_000
SECRETS = ConnectSecrets("device-secret", "product-secret", dynamic_activation=False)


@pytest.mark.parametrize(
    ("client_id", "expected"),
    [
        ("dk1|securemode=2,signmethod=sha256,timestamp=1|", ENOS),
        ("pk1&dn1|securemode=3,signmethod=hmacsha1,timestamp=1|", ALINK),
        ("dk1", ENOS),  # no bars at all: EnOS, which then refuses the shape
        ("", ENOS),
        ("dk1|a=b&c|", ENOS),  # a `&` after the first bar does not make it linkkit's
    ],
)
def test_the_client_id_chooses_the_dialect(client_id: str, expected: Dialect) -> None:
    assert dialect_of(client_id) is expected


def test_every_dialect_has_a_unique_name_and_is_found_by_it() -> None:
    assert NAMES == ("alink", "enos")
    for dialect in DIALECTS:
        assert dialect_named(dialect.name) is dialect
        assert str(dialect) == dialect.name
    with pytest.raises(KeyError, match="there are alink, enos"):
        dialect_named("quectel")


def test_each_dialect_signs_a_connect_that_it_then_accepts() -> None:
    """What a simulator signs with `device_credentials` is what admission expects."""
    for dialect in DIALECTS:
        creds = dialect.device_credentials("pk1", "dk1", "device-secret", NOW_MS)
        assert dialect_of(creds.client_id) is dialect
        client = parse_enos_client_id(creds.client_id)
        expected = dialect.connect_sign(client, "pk1", "dk1", SECRETS)
        assert isinstance(expected, ExpectedSign)
        assert not expected.activating
        assert sign_matches(expected.sign, creds.password)
        wrong = ConnectSecrets("another-secret", "product-secret")
        other = dialect.connect_sign(client, "pk1", "dk1", wrong)
        assert isinstance(other, ExpectedSign)
        assert not sign_matches(other.sign, creds.password)


def test_enos_signs_in_milliseconds_and_linkkit_in_seconds() -> None:
    enos = parse_enos_client_id(ENOS.device_credentials("pk1", "dk1", "s", NOW_MS).client_id)
    alink = parse_enos_client_id(ALINK.device_credentials("pk1", "dk1", "s", NOW_MS).client_id)
    assert enos.timestamp == str(NOW_MS)
    assert alink.timestamp == str(NOW_MS // 1000)
    assert enos.timestamp_ms == alink.timestamp_ms == NOW_MS


def test_enos_activates_with_the_product_secret_only_where_allowed() -> None:
    creds = ENOS.device_credentials("pk1", "dk1", "product-secret", NOW_MS, activate=True)
    client = parse_enos_client_id(creds.client_id)
    assert client.secure_mode == 3
    refused = ENOS.connect_sign(client, "pk1", "dk1", SECRETS)
    assert refused == SignProblem(
        "dynamic-activation",
        "dynamic activation (securemode=3) is not enabled for this product",
        codes.DYNAMIC_ACTIVATION_DENIED,
    )
    allowed = ConnectSecrets("device-secret", "product-secret", dynamic_activation=True)
    expected = ENOS.connect_sign(client, "pk1", "dk1", allowed)
    assert isinstance(expected, ExpectedSign)
    assert expected.activating
    assert sign_matches(expected.sign, creds.password)


def test_enos_refuses_other_secure_modes() -> None:
    client = parse_enos_client_id("dk1|securemode=7,signmethod=sha256,timestamp=1|")
    problem = ENOS.connect_sign(client, "pk1", "dk1", SECRETS)
    assert isinstance(problem, SignProblem)
    assert (problem.reason, problem.code) == ("bad-client-id", codes.SIGN_FAILED)


def test_linkkit_signs_with_the_device_secret_whatever_the_secure_mode() -> None:
    """linkkit's HMAC over clientId, deviceName, productKey, timestamp (protocol.md, 1)."""
    client = parse_enos_client_id("pk1&dn1|securemode=2,signmethod=hmacsha1,timestamp=1700|")
    expected = ALINK.connect_sign(client, "pk1", "dn1", SECRETS)
    content = "clientIdpk1&dn1deviceNamedn1productKeypk1timestamp1700"
    linkkit = hmac.new(b"device-secret", content.encode(), hashlib.sha1).hexdigest()
    assert expected == ExpectedSign(linkkit, activating=False)


def test_linkkit_names_its_own_device_in_the_client_id() -> None:
    client = parse_enos_client_id("pk1&other|securemode=3,signmethod=hmacsha1,timestamp=1|")
    problem = ALINK.connect_sign(client, "pk1", "dn1", SECRETS)
    assert problem == SignProblem(
        "bad-client-id", "the client id names another device", codes.SIGN_FAILED
    )
    plain = parse_enos_client_id("pk1&dn1|securemode=3,signmethod=sha256,timestamp=1|")
    with pytest.raises(ClientIdError):  # a plain digest is not one of linkkit's HMACs
        ALINK.connect_sign(plain, "pk1", "dn1", SECRETS)


def test_sub_device_signs_follow_the_dialect() -> None:
    sub = ("pk2", "dk2")
    enos = ENOS.sub_device_sign("s", sub, "cid", "1700", "sha256")
    assert enos == enos_sign("s", enos_connect_params("cid", "pk2", "dk2", "1700"), "sha256")
    alink = ALINK.sub_device_sign("s", sub, "cid", "1700", "hmacsha256")
    content = b"clientIdciddeviceNamedk2productKeypk2timestamp1700"
    assert alink == hmac.new(b"s", content, hashlib.sha256).hexdigest()
    with pytest.raises(ClientIdError):
        ALINK.sub_device_sign("s", sub, "cid", "1700", "sha256")


def test_one_codes_table_per_dialect() -> None:
    assert ENOS.code(codes.DEVICE_NOT_FOUND) == codes.DEVICE_NOT_FOUND
    assert {c: ALINK.code(c) for c in ALINK.codes} == {
        codes.PAYLOAD_FORMAT_ERROR: 460,
        codes.DEVICE_NOT_FOUND: 6100,
        codes.DEVICE_DISABLED: 6204,
    }
    assert ALINK.code(codes.SIGN_FAILED) == codes.SIGN_FAILED  # not in the table: the same


def test_replies_are_in_the_dialects_envelope_with_its_codes() -> None:
    enos = orjson.loads(ENOS.reply("7", codes.PAYLOAD_FORMAT_ERROR, "", "bad", "m.x"))
    assert enos == {"id": "7", "code": 1220, "data": "", "message": "bad"}
    alink = orjson.loads(ALINK.reply("7", codes.PAYLOAD_FORMAT_ERROR, "", "bad", "m.x"))
    assert alink == {"id": "7", "code": 460, "data": {}, "message": "bad", "version": "1.0"} | {
        "method": "m.x"
    }
    # encode_reply takes the code as it is: Alibaba's scripts get Alink's envelope with
    # the codes of the device's dialect.
    scripted = orjson.loads(ALINK.encode_reply("7", ENOS.code(1220), {}, "bad"))
    assert scripted["code"] == 1220
    ok = orjson.loads(ALINK.reply("8", codes.OK))
    assert (ok["code"], ok["message"]) == (200, "success")


def test_uplinks_are_classified_by_each_dialects_topics() -> None:
    assert ENOS.classify_uplink("thing/measurepoint/post") == (Uplink.MEASUREPOINT_POST, "")
    assert ALINK.classify_uplink("thing/measurepoint/post") is None
    assert ALINK.classify_uplink("thing/event/property/post") == (Uplink.PROPERTY_POST, "")
    assert ENOS.classify_uplink("thing/event/property/post") == (Uplink.EVENT_POST, "property")
    for dialect in DIALECTS:
        assert dialect.classify_uplink(dialect.raw_up) == (Uplink.RAW_UP, "")
        assert dialect.raw_down == "thing/model/down_raw"
        assert dialect.reply_suffix == "_reply"


@pytest.mark.parametrize(
    ("dialect", "namespace", "rest", "function"),
    [
        (ENOS, "sys", "thing/topo/add", GatewayFunction.TOPO_ADD),
        (ALINK, "sys", "thing/topo/add", GatewayFunction.TOPO_ADD),
        (ENOS, "sys", "thing/device/register", GatewayFunction.REGISTER),
        (ALINK, "sys", "thing/sub/register", GatewayFunction.REGISTER),
        (ALINK, "sys", "thing/device/register", None),
        (ENOS, "ext", "combine/login/batch", GatewayFunction.LOGIN_BATCH),
        (ALINK, "ext", "combine/batch_login", GatewayFunction.LOGIN_ALL_OR_NONE),
        (ALINK, "ext", "combine/batch_logout", GatewayFunction.LOGOUT_BATCH),
        (ENOS, "ext", "combine/logout", GatewayFunction.LOGOUT),
        (ALINK, "ext", "combine/logout", None),
        (ENOS, "sys", "combine/login", None),  # the namespace counts
    ],
)
def test_gateway_requests_are_found_by_each_dialects_topics(
    dialect: Dialect, namespace: str, rest: str, function: GatewayFunction | None
) -> None:
    assert dialect.gateway_function(namespace, rest) is function


def test_property_sets_and_posts_in_each_dialect() -> None:
    points = {"temp": 1}
    assert ENOS.property_set(points) == (
        "thing/service/measurepoint/set",
        "thing.service.measurepoint.set",
        {"measurepoints": points},
    )
    assert ALINK.property_set(points) == (
        "thing/service/property/set",
        "thing.service.property.set",
        points,
    )
    assert ENOS.property_post(points, NOW_MS) == (
        "thing/measurepoint/post",
        "thing.measurepoint.post",
        {"measurepoints": points, "time": NOW_MS},
    )
    assert ALINK.property_post(points, NOW_MS)[:2] == (
        "thing/event/property/post",
        "thing.event.property.post",
    )
    for dialect in DIALECTS:
        call = dialect.service_call("reboot", {})
        assert call == ("thing/service/reboot", "thing.service.reboot", {})


def test_a_gateway_is_told_of_a_moved_sub_device_in_its_dialect() -> None:
    topic, payload = ENOS.topology_removed(("gp", "gd"), ("sp", "sd"), "5")
    assert topic == "/ext/session/gp/gd/combine/delete"
    assert orjson.loads(payload)["params"] == {"productKey": "sp", "deviceKey": "sd"}
    topic, payload = ALINK.topology_removed(("gp", "gd"), ("sp", "sd"), "5")
    assert topic == "/sys/gp/gd/thing/topo/change"
    body = orjson.loads(payload)
    assert (body["id"], body["method"]) == ("5", "thing.topo.change")
    assert body["params"] == {"status": 1, "subList": [{"productKey": "sp", "deviceName": "sd"}]}


def test_registrations_name_the_device_as_the_dialect_does() -> None:
    creds = {"productKey": "pk", "deviceKey": "dk", "deviceSecret": "s", "assetId": "a"}
    assert ENOS.registered(creds) == creds
    assert ALINK.registered(creds) == {"productKey": "pk", "deviceName": "dk", "deviceSecret": "s"}
    assert ENOS.registered_key({"deviceName": "dn"}) is None
    assert ALINK.registered_key({"deviceName": "dn"}) == "dn"
    assert ALINK.registered_key({"deviceName": 5}) is None


def test_the_dialects_import_nothing_of_gatehouse_outside_broker_protocol() -> None:
    """Pure like the rest of broker/protocol: simulators and other dialects build on it."""
    import ast
    from pathlib import Path

    import broker.protocol.dialects as package

    for path in Path(package.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                assert top not in {"amqtt", "registry", "certs", "simulators"}, (path, name)
                if top == "broker":
                    assert name.startswith("broker.protocol"), (path, name)


@pytest.mark.parametrize("dialect", DIALECTS, ids=NAMES)
def test_what_a_simulated_gateway_sends_is_a_request_of_its_dialect(dialect: Dialect) -> None:
    """The device's side (what simulators send) lands on the gateway functions the
    broker's side of the same dialect answers."""
    subs = [(("sp", f"sd{i}"), f"secret-{i}") for i in range(3)]
    rest, method, params = dialect.login_batch(subs, str(NOW_MS))
    assert dialect.gateway_function("ext", rest) in (
        GatewayFunction.LOGIN_BATCH,
        GatewayFunction.LOGIN_ALL_OR_NONE,
    )
    assert method == rest.replace("/", ".").replace("_", ".")
    assert len(orjson.dumps(params)) > 0
    rest, method, _ = dialect.logout(("sp", "sd0"))
    assert dialect.gateway_function("ext", rest) in (
        GatewayFunction.LOGOUT,
        GatewayFunction.LOGOUT_BATCH,
    )
    entry = dialect.topology_entry(("sp", "sd0"), "secret-0", str(NOW_MS))
    method = entry.get("signMethod") or entry["signmethod"]  # linkkit spells it so
    expected = dialect.sub_device_sign(
        "secret-0", ("sp", "sd0"), entry["clientId"], str(NOW_MS), method
    )
    assert entry["sign"] == expected
    assert dialect.login_batch_limit >= 1


def test_the_login_replies_name_who_is_in_as_each_dialect_does() -> None:
    enos = {"code": 200, "data": {"loginedSubDevices": [{"productKey": "p", "deviceKey": "d"}]}}
    assert ENOS.logged_in(enos) == [("p", "d")]
    alink = {"code": 200, "data": [{"productKey": "p", "deviceName": "d"}]}
    assert ALINK.logged_in(alink) == [("p", "d")]
    assert ALINK.logged_in({**alink, "code": 460}) == []  # all or nothing


def test_only_a_dialect_whose_sdk_buffers_resumes() -> None:
    assert ENOS.buffers_offline and not ALINK.buffers_offline
    rest, method, params = ENOS.resume_batch(("p", "d"), [{"measurepoints": {"t": 1}, "time": 5}])
    assert (rest, method) == ("thing/measurepoint/resume/batch", "thing.measurepoint.resume.batch")
    assert params == [{"productKey": "p", "deviceKey": "d", "measurepoints": {"t": 1}, "time": 5}]
    assert ENOS.classify_uplink(rest) == (Uplink.MEASUREPOINT_RESUME_BATCH, "")
    with pytest.raises(NotImplementedError, match="alink"):
        ALINK.resume_batch(("p", "d"), [])
    for dialect in DIALECTS:
        assert dialect.post_reply_topic() == dialect.property_post({}, 0)[0] + "_reply"


def test_a_dialect_is_one_object_across_copies_and_processes() -> None:
    """The load runner's workers get credentials by pickling: a dialect stays itself."""
    import copy
    import pickle

    for dialect in DIALECTS:
        assert pickle.loads(pickle.dumps(dialect)) is dialect
        assert copy.deepcopy(dialect) is dialect


def test_no_dialect_name_is_compared_outside_the_dialect_modules() -> None:
    """Issue 21: the broker and the simulators ask the dialect object, never its name."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    names = set(NAMES)
    found = []
    for folder in ("broker", "simulators", "registry"):
        for path in (root / folder).rglob("*.py"):
            if "dialects" in path.parts:
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Compare):
                    for side in (node.left, *node.comparators):
                        if isinstance(side, ast.Constant) and side.value in names:
                            found.append(f"{path.relative_to(root)}:{node.lineno}")
    assert found == []
