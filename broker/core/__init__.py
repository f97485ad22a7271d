"""The broker core: amqtt 0.12.1 with the fixes a device platform needs.

The fixes override amqtt internals, so they hold for exactly the pinned version;
importing this package with another amqtt fails loudly rather than misbehaving.
"""

from __future__ import annotations

import amqtt

from broker.core.broker import CoreLimits, CoreStats, GatehouseBroker
from broker.core.handler import GatehouseHandler
from broker.core.hooks import DROP, ROUTE, BrokerHooks, Verdict
from broker.core.session import GatehouseSession
from broker.core.subscriptions import SubscriptionIndex, is_valid_filter, matches

AMQTT_VERSION = "0.12.1"

if amqtt.__version__ != AMQTT_VERSION:  # pragma: no cover - guards a mis-installed environment
    raise ImportError(
        f"gatehouse's broker core is written against amqtt {AMQTT_VERSION}, "
        f"found {amqtt.__version__}: reinstall with `pip install -e .`"
    )

__all__ = [
    "AMQTT_VERSION",
    "DROP",
    "ROUTE",
    "BrokerHooks",
    "CoreLimits",
    "CoreStats",
    "GatehouseBroker",
    "GatehouseHandler",
    "GatehouseSession",
    "SubscriptionIndex",
    "Verdict",
    "is_valid_filter",
    "matches",
]
