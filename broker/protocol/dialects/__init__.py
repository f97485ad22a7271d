"""The dialects gatehouse speaks, as objects: a connection's dialect is chosen once, at
admission, from its client id (`dialect_of`), and every question that differs between
SDKs is asked of it (docs/protocol.md, "Adding a dialect").

To add one: a module here with a `Dialect` subclass and its instance, listed in
`DIALECTS` before the dialects whose client ids it could be mistaken for.
"""

from __future__ import annotations

from broker.protocol.dialects.alink import ALINK
from broker.protocol.dialects.base import (
    ConnectSecrets,
    Dialect,
    ExpectedSign,
    GatewayFunction,
    SignProblem,
)
from broker.protocol.dialects.enos import ENOS

# Asked in order whether they claim a client id; EnOS, which claims what Alink does
# not, is also the answer when none does.
DIALECTS: tuple[Dialect, ...] = (ALINK, ENOS)
DEFAULT = ENOS
NAMES: tuple[str, ...] = tuple(sorted(d.name for d in DIALECTS))
# Alibaba's data-parsing scripts read and write Alink's envelopes, whatever dialect the
# device signed in with (docs/protocol.md, section 12).
SCRIPT_DIALECT: Dialect = ALINK


def dialect_of(client_id: str) -> Dialect:
    """The dialect a CONNECT with this client id speaks."""
    for dialect in DIALECTS:
        if dialect.claims(client_id):
            return dialect
    return DEFAULT


def dialect_named(name: str) -> Dialect:
    """A dialect by its name (the simulators' `--dialect`); KeyError if none."""
    for dialect in DIALECTS:
        if dialect.name == name:
            return dialect
    raise KeyError(f"no dialect {name!r}; there are {', '.join(NAMES)}")


__all__ = [
    "ALINK",
    "DEFAULT",
    "DIALECTS",
    "ENOS",
    "NAMES",
    "SCRIPT_DIALECT",
    "ConnectSecrets",
    "Dialect",
    "ExpectedSign",
    "GatewayFunction",
    "SignProblem",
    "dialect_named",
    "dialect_of",
]
