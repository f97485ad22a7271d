"""The device protocol's pure functions: EnOS signs, client ids, topics, envelopes.

Signs are checked against the public EnOS SDK's own signing code, so that gatehouse
and the SDK cannot drift apart.
"""

from __future__ import annotations

import pytest
from enos.core.util.SignUtil import SignUtil

from broker.protocol import (
    ClientIdError,
    EnvelopeError,
    Uplink,
    alink_connect_params,
    alink_credentials,
    alink_sign,
    classify_alink_uplink,
    classify_enos_uplink,
    encode_reply,
    enos_connect_params,
    enos_credentials,
    enos_sign,
    parse_device_topic,
    parse_enos_client_id,
    parse_request,
    request_id_of,
    sign_matches,
    split_username,
)


@pytest.mark.parametrize("method", ["hmacsha256", "hmacsha1", "hmacmd5"])
@pytest.mark.parametrize("timestamp", ["1795300635825.1592", "1795300635825", "1795300635"])
def test_the_sign_is_the_enos_sdks(method: str, timestamp: str) -> None:
    params = enos_connect_params("dk1", "pk1", "dk1", timestamp)
    sdk = SignUtil.sign("s3cret", dict(params), method)
    ours = enos_sign("s3cret", params, method)
    # The SDK sends SHA-1 in upper case "for historical reasons"; hex case never matters.
    assert sign_matches(ours, sdk)
    assert ours == sdk.lower()


def test_the_documented_labels_mean_the_same_digests() -> None:
    params = enos_connect_params("dk1", "pk1", "dk1", "1")
    assert enos_sign("s", params, "sha256") == enos_sign("s", params, "hmacsha256")
    assert enos_sign("s", params, "SHA1") == enos_sign("s", params, "hmacsha1")
    with pytest.raises(ClientIdError):
        enos_sign("s", params, "hmacsha512")


def test_a_different_secret_or_field_changes_the_sign() -> None:
    base = enos_sign("s", enos_connect_params("dk1", "pk1", "dk1", "1"))
    assert not sign_matches(base, enos_sign("t", enos_connect_params("dk1", "pk1", "dk1", "1")))
    assert not sign_matches(base, enos_sign("s", enos_connect_params("dk1", "pk1", "dk1", "2")))
    assert not sign_matches(base, enos_sign("s", enos_connect_params("dk1", "pk2", "dk1", "1")))


def test_credentials_round_trip_through_the_client_id() -> None:
    creds = enos_credentials("pk1", "dk1", "s3cret", "1795300635825.1592")
    assert creds.username == "dk1&pk1"
    client = parse_enos_client_id(creds.client_id)
    assert (client.cid, client.secure_mode, client.sign_method) == ("dk1", 2, "hmacsha256")
    assert client.timestamp == "1795300635825.1592"  # kept as signed, not re-formatted
    params = enos_connect_params(client.cid, "pk1", "dk1", client.timestamp)
    assert sign_matches(enos_sign("s3cret", params, client.sign_method), creds.password)


def test_client_id_fields_are_read_case_insensitively() -> None:
    client = parse_enos_client_id("dk|SecureMode=2,SignMethod=SHA256,timestamp=7|")
    assert (client.secure_mode, client.sign_method, client.timestamp) == (2, "sha256", "7")


@pytest.mark.parametrize(
    "client_id",
    [
        "dk1",
        "dk1|securemode=2,signmethod=hmacsha256,timestamp=1",  # no closing bar
        "|securemode=2,signmethod=hmacsha256,timestamp=1|",
        "dk1|signmethod=hmacsha256,timestamp=1|",
        "dk1|securemode=x,signmethod=hmacsha256,timestamp=1|",
        "dk1|securemode=2,signmethod=rot13,timestamp=1|",
        "dk1|securemode=2,signmethod=hmacsha256|",
        "dk1|securemode=2,signmethod|",
        "dk1|" + "a=b," * 100 + "|",
    ],
)
def test_malformed_client_ids_are_refused(client_id: str) -> None:
    with pytest.raises(ClientIdError):
        parse_enos_client_id(client_id)


@pytest.mark.parametrize(
    ("username", "expected"),
    [("dk&pk", ("pk", "dk")), ("dk", None), ("&pk", None), ("dk&", None), ("a&b&c", None)],
)
def test_usernames(username: str, expected: tuple[str, str] | None) -> None:
    assert split_username(username) == expected


def test_device_topics_split_into_their_parts() -> None:
    topic = parse_device_topic("/sys/pk/dk/thing/measurepoint/post")
    assert topic is not None
    assert (topic.namespace, topic.product_key, topic.device_key) == ("sys", "pk", "dk")
    assert topic.rest == "thing/measurepoint/post"
    ext = parse_device_topic("/ext/session/pk/dk/combine/login")
    assert ext is not None and ext.namespace == "ext" and ext.rest == "combine/login"
    for outside in ["/sys/pk/dk", "/sys/pk", "sys/pk/dk/x", "/ext/pk/dk/x", "/sys//dk/x", "x"]:
        assert parse_device_topic(outside) is None


@pytest.mark.parametrize(
    ("rest", "expected"),
    [
        ("thing/measurepoint/post", (Uplink.MEASUREPOINT_POST, "")),
        ("thing/measurepoint/post/batch", (Uplink.MEASUREPOINT_POST_BATCH, "")),
        ("thing/measurepoint/resume", (Uplink.MEASUREPOINT_RESUME, "")),
        ("thing/measurepoint/resume/batch", (Uplink.MEASUREPOINT_RESUME_BATCH, "")),
        ("thing/event/overheat/post", (Uplink.EVENT_POST, "overheat")),
        ("thing/attribute/update", (Uplink.ATTRIBUTE_UPDATE, "")),
        ("thing/model/up_raw", (Uplink.RAW_UP, "")),
        ("thing/event//post", None),
        ("thing/event/a/b/post", None),
        ("thing/measurepoint/post_reply", None),
        ("thing/service/reboot_reply", None),
    ],
)
def test_uplinks_are_classified_by_topic(rest: str, expected: tuple[Uplink, str] | None) -> None:
    assert classify_enos_uplink(rest) == expected


def test_a_request_keeps_its_id_as_a_string() -> None:
    request = parse_request(b'{"id": 17, "version": "1.0", "method": "m", "params": {"a": 1}}')
    assert (request.id, request.method, request.params) == ("17", "m", {"a": 1})
    assert encode_reply(request.id, 200).startswith(b'{"id":"17","code":200')


@pytest.mark.parametrize(
    ("payload", "fault"),
    [
        (b"{not json", "not JSON"),
        (b"", "not JSON"),
        (b"[1, 2]", "JSON object"),
        (b'{"method": "m"}', "id must be a string"),
        (b'{"id": true}', "id must be a string"),
        (b'{"id": "1", "method": 5}', "method must be a string"),
    ],
)
def test_malformed_requests_say_what_is_wrong(payload: bytes, fault: str) -> None:
    with pytest.raises(EnvelopeError, match=fault):
        parse_request(payload)


def test_the_id_of_a_faulty_request_is_found_where_it_can_be() -> None:
    assert request_id_of(b'{"id": "9", "params": 5}') == "9"
    assert request_id_of(b"{broken") == ""
    assert request_id_of(b"[]") == ""


def test_the_alink_sign_is_linkkits() -> None:
    """linkkit 1.2.13 signs `clientId{pk}&{dn}deviceName{dn}productKey{pk}timestamp{ts}`
    with HMAC-SHA1 keyed by the device secret (its __config_mqtt_client_internal)."""
    import hashlib
    import hmac

    content = "clientId" + "pk1&dn1" + "deviceName" + "dn1" + "productKey" + "pk1" + "timestamp1700"
    linkkit = hmac.new(b"s3cret", content.encode(), hashlib.sha1).hexdigest()
    creds = alink_credentials("pk1", "dn1", "s3cret", "1700")
    assert creds.password == linkkit
    assert creds.username == "dn1&pk1"
    assert creds.client_id.startswith("pk1&dn1|securemode=3,signmethod=hmacsha1,")
    for method in ("hmacsha256", "hmacmd5"):
        params = alink_connect_params("pk1", "dn1", "1700")
        assert alink_sign("s3cret", params, method) != linkkit
    with pytest.raises(ClientIdError):
        alink_sign("s", alink_connect_params("pk1", "dn1", "1"), "sha256")


def test_alink_uplinks_are_classified_by_topic() -> None:
    assert classify_alink_uplink("thing/event/property/post") == (Uplink.PROPERTY_POST, "")
    assert classify_alink_uplink("thing/event/overheat/post") == (Uplink.EVENT_POST, "overheat")
    assert classify_alink_uplink("thing/measurepoint/post") is None
    assert classify_enos_uplink("thing/event/property/post") == (Uplink.EVENT_POST, "property")
