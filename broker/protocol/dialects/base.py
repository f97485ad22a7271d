"""What a dialect is: everything that differs between the device SDKs gatehouse speaks
to (docs/protocol.md, "Adding a dialect"). The broker asks these questions of the
dialect a connection was admitted in, and never compares dialect names.

A dialect's codes table maps the broker's codes (EnOS's, broker/protocol/codes.py,
which every part of the broker decides in) to the codes its SDK expects; a code not in
the table is the same in both.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, ClassVar

from broker.protocol.signs import ClientIdError, EnosClientId, EnosCredentials
from broker.protocol.topics import RAW_DOWN, RAW_UP, REPLY_SUFFIX, Uplink

DeviceId = tuple[str, str]  # (product key, device key)


class GatewayFunction(Enum):
    """The gateway requests gatehouse answers, whatever topic a dialect puts them on."""

    TOPO_ADD = "topo-add"
    TOPO_DELETE = "topo-delete"
    TOPO_GET = "topo-get"
    REGISTER = "register"
    LOGIN = "login"
    LOGIN_BATCH = "login-batch"  # EnOS: each sub-device on its own
    LOGIN_ALL_OR_NONE = "login-all-or-none"  # Alink: at most 50, all or nothing
    LOGOUT = "logout"
    LOGOUT_BATCH = "logout-batch"


@dataclass(frozen=True, slots=True)
class ConnectSecrets:
    """What a CONNECT's sign may be keyed by, and whether the product allows signing with
    its own secret (dynamic activation)."""

    device_secret: str
    product_secret: str
    dynamic_activation: bool = False


@dataclass(frozen=True, slots=True)
class ExpectedSign:
    """The sign a CONNECT must carry; `activating` if it is the ProductSecret's."""

    sign: str
    activating: bool = False


@dataclass(frozen=True, slots=True)
class SignProblem:
    """Why a CONNECT cannot be signed right whatever its password: a reason for the log,
    a message, and the broker's (EnOS) code; the dialect's code is `Dialect.code(code)`."""

    reason: str
    message: str
    code: int


class Dialect(ABC):
    """One device SDK's way of signing, addressing and answering. Stateless: one instance
    per dialect, shared by every connection admitted in it."""

    name: ClassVar[str]  # for logs, the API, metrics and presence
    codes: ClassVar[Mapping[int, int]] = {}  # the broker's code -> this dialect's
    raw_up: ClassVar[str] = RAW_UP  # the Custom-format topics under `/sys/{pk}/{dk}/`
    raw_down: ClassVar[str] = RAW_DOWN
    reply_suffix: ClassVar[str] = REPLY_SUFFIX

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"<dialect {self.name}>"

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        # One instance per dialect, in other processes too (the load runner's workers).
        return _dialect_named, (self.name,)

    def __deepcopy__(self, memo: dict[int, Any]) -> Dialect:
        return self

    # -- CONNECT -------------------------------------------------------------------------

    @abstractmethod
    def claims(self, client_id: str) -> bool:
        """Whether a CONNECT with this client id is in this dialect."""

    @abstractmethod
    def connect_sign(
        self, client: EnosClientId, product_key: str, device_key: str, secrets: ConnectSecrets
    ) -> ExpectedSign | SignProblem:
        """The sign a device's CONNECT must carry, from its parsed client id."""

    @abstractmethod
    def sub_device_sign(
        self, secret: str, sub: DeviceId, client_id: str, timestamp: str, method: str
    ) -> str:
        """The sign a gateway sends to add or log in a sub-device; ClientIdError if the
        method is unknown."""

    @abstractmethod
    def device_credentials(
        self,
        product_key: str,
        device_key: str,
        secret: str,
        now_ms: float,
        *,
        activate: bool = False,
    ) -> EnosCredentials:
        """A CONNECT signed as this dialect's SDK signs it (simulators and tests)."""

    # -- codes and envelopes -------------------------------------------------------------

    def code(self, code: int) -> int:
        """The broker's code as this dialect's SDK knows it."""
        return self.codes.get(code, code)

    def reply(
        self, request_id: str, code: int, data: Any = "", message: str = "", method: str = ""
    ) -> bytes:
        """The reply to a request, with the broker's code mapped to this dialect's."""
        return self.encode_reply(request_id, self.code(code), data, message, method)

    @abstractmethod
    def encode_reply(
        self, request_id: str, code: int, data: Any = "", message: str = "", method: str = ""
    ) -> bytes:
        """This dialect's reply envelope, with the code as given."""

    # -- topics --------------------------------------------------------------------------

    @abstractmethod
    def classify_uplink(self, rest: str) -> tuple[Uplink, str] | None:
        """The uplink a `/sys/{pk}/{dk}/{rest}` topic carries, and the event id for
        events; None for what gatehouse does not interpret."""

    @abstractmethod
    def gateway_function(self, namespace: str, rest: str) -> GatewayFunction | None:
        """The gateway request on `/{namespace}/.../{pk}/{dk}/{rest}`, if it is one."""

    @abstractmethod
    def property_set(self, points: Mapping[str, Any]) -> tuple[str, str, Any]:
        """A property set downlink: the topic under `/sys/{pk}/{dk}/`, the method, the
        params."""

    def service_call(self, service_id: str, params: Any) -> tuple[str, str, Any]:
        """A service invocation downlink: the same in both SDKs gatehouse speaks."""
        return f"thing/service/{service_id}", f"thing.service.{service_id}", params

    @abstractmethod
    def property_post(self, points: Mapping[str, Any], now_ms: int) -> tuple[str, str, Any]:
        """A property post uplink as the SDK sends it (simulators and tests)."""

    # -- gateways ------------------------------------------------------------------------

    @abstractmethod
    def topology_removed(
        self, gateway: DeviceId, sub: DeviceId, request_id: str
    ) -> tuple[str, bytes]:
        """The notice to a gateway whose sub-device was moved to another: topic, payload."""

    def registered_key(self, entry: Mapping[str, Any]) -> str | None:
        """The device key a gateway's registration names in a field other than
        `deviceKey`, if the dialect has one."""
        return None

    @abstractmethod
    def registered(self, credentials: Mapping[str, str]) -> dict[str, str]:
        """A registered sub-device in the reply, from its EnOS credentials (productKey,
        deviceKey, deviceSecret, assetId)."""

    # -- the device's side: what its SDK sends (simulators and tests) --------------------

    # Whether the SDK keeps the posts made while offline and uploads them on reconnect
    # (`resume_batch`).
    buffers_offline: ClassVar[bool] = False
    login_batch_limit: ClassVar[int]  # sub-devices one batch login may carry

    def post_reply_topic(self) -> str:
        """The reply topic of a property post, under `/sys/{pk}/{dk}/`."""
        return self.property_post({}, 0)[0] + self.reply_suffix

    def resume_batch(
        self, device: DeviceId, posts: Sequence[Mapping[str, Any]]
    ) -> tuple[str, str, Any]:
        """The upload of property posts' params kept while offline: the topic under
        `/sys/{pk}/{dk}/`, the method, the params. Only for dialects that buffer."""
        raise NotImplementedError(f"the {self.name} SDK does not keep posts made offline")

    @abstractmethod
    def topology_entry(self, sub: DeviceId, secret: str, timestamp: str) -> dict[str, str]:
        """A sub-device in a `thing/topo/add`, signed with its secret as the SDK signs it."""

    @abstractmethod
    def login_batch(
        self, subs: Sequence[tuple[DeviceId, str]], timestamp: str
    ) -> tuple[str, str, Any]:
        """A batch login of sub-devices, each with its secret: the topic under
        `/ext/session/{pk}/{dk}/`, the method, the params."""

    @abstractmethod
    def logged_in(self, reply: Mapping[str, Any]) -> list[DeviceId]:
        """The sub-devices a batch login's reply says are logged in."""

    @abstractmethod
    def logout(self, sub: DeviceId) -> tuple[str, str, Any]:
        """A sub-device's logout: the topic under `/ext/session/{pk}/{dk}/`, the method,
        the params."""


def _dialect_named(name: str) -> Dialect:
    from broker.protocol.dialects import dialect_named  # the registry of dialects

    return dialect_named(name)


__all__ = [
    "ClientIdError",
    "ConnectSecrets",
    "DeviceId",
    "Dialect",
    "ExpectedSign",
    "GatewayFunction",
    "SignProblem",
]
