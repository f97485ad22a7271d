"""`/subscriptions` actions: the organisation's data subscriptions (EnOS Data
Subscription), consumed with `enos-subscribe` on the subscription port.

`create` answers the subscription with its own `accessKey` and `accessSecret`, the
credentials the client is configured with (shown this once); `get` shows each consumer
group's committed offsets and the backlog.
"""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from broker.api.calls import Call, Handler
from broker.api.envelope import ok
from broker.streams.hub import StreamHub
from broker.streams.subscriptions import SubscriptionLog
from registry import Conflict, InvalidArgument, NotFound
from registry.streams import PARTITIONS, new_subscription

MAX_PER_ORG = 15  # EnOS Cloud's limit of subscription jobs per organisation


def _state(held: SubscriptionLog) -> dict[str, Any]:
    return {
        **held.sub.view(),
        "partitions": PARTITIONS,
        "lastOffsets": list(held.last),
        "backlog": held.backlog(),
        "groups": [
            {
                "consumerGroup": group.name,
                "committedOffsets": list(group.committed),
                "consumers": len(group.members),
            }
            for group in held.groups.values()
        ],
    }


def subscription_actions(hub: StreamHub, port: int) -> dict[str, Handler]:
    subscriptions = hub.subscriptions

    def held(call: Call) -> SubscriptionLog:
        sub_id = call.param("subId")
        found = subscriptions.logs.get(sub_id)
        if found is None or found.sub.orgId != call.org.orgId:
            raise NotFound(f"subscription {sub_id!r:.70} does not exist")
        return found

    async def create(call: Call) -> Response:
        sub = new_subscription(call.org.orgId, call.body)
        for product_key in sub.productKeys:
            await call.registry.get_product(call.org.orgId, product_key)
        if sub.subId in subscriptions.logs:
            raise Conflict(f"subscription {sub.subId!r} exists")
        if len(subscriptions.of_org(call.org.orgId)) >= MAX_PER_ORG:
            raise InvalidArgument(f"an organisation has at most {MAX_PER_ORG} subscriptions")
        await subscriptions.add(sub)
        return ok({**sub.view(with_secret=True), "port": port})

    async def get(call: Call) -> Response:
        return ok(_state(held(call)))

    async def list_(call: Call) -> Response:
        return ok(
            [_state(subscriptions.logs[s.subId]) for s in subscriptions.of_org(call.org.orgId)]
        )

    async def delete(call: Call) -> Response:
        await subscriptions.remove(held(call).sub.subId)
        return ok()

    return {"create": create, "get": get, "list": list_, "delete": delete}
