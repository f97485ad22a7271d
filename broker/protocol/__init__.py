"""The device protocol as pure functions: topics, envelopes, signs and reply codes.

Nothing here imports amqtt or any other part of gatehouse, so the simulators (and
anyone else) can sign, address and parse messages exactly as the broker does.
"""

from broker.protocol import codes
from broker.protocol.envelope import (
    EnvelopeError,
    PayloadNotJson,
    Request,
    encode_alink_reply,
    encode_reply,
    encode_request,
    parse_request,
    request_id_of,
)
from broker.protocol.signs import (
    SIGN_METHODS,
    ClientIdError,
    EnosClientId,
    EnosCredentials,
    alink_connect_params,
    alink_credentials,
    alink_sign,
    enos_client_id,
    enos_connect_params,
    enos_credentials,
    enos_sign,
    parse_enos_client_id,
    sign_matches,
    split_username,
)
from broker.protocol.topics import (
    DeviceTopic,
    Uplink,
    classify_alink_uplink,
    classify_enos_uplink,
    downlink_filters,
    ext_prefix,
    parse_device_topic,
    reply_topic,
    sys_prefix,
)

__all__ = [
    "SIGN_METHODS",
    "ClientIdError",
    "DeviceTopic",
    "EnosClientId",
    "EnosCredentials",
    "EnvelopeError",
    "PayloadNotJson",
    "Request",
    "Uplink",
    "alink_connect_params",
    "alink_credentials",
    "alink_sign",
    "classify_alink_uplink",
    "classify_enos_uplink",
    "codes",
    "downlink_filters",
    "encode_alink_reply",
    "encode_reply",
    "encode_request",
    "enos_client_id",
    "enos_connect_params",
    "enos_credentials",
    "enos_sign",
    "ext_prefix",
    "parse_device_topic",
    "parse_enos_client_id",
    "parse_request",
    "reply_topic",
    "request_id_of",
    "sign_matches",
    "split_username",
    "sys_prefix",
]
