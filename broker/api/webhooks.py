"""`/webhooks` actions: HTTP endpoints that get the organisation's messages as signed
POSTs (broker/streams/webhooks.py); `deliveries` is an endpoint's log of attempts."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from broker.api.calls import Call, Handler
from broker.api.envelope import ok
from broker.streams.hub import StreamHub
from broker.streams.webhooks import Endpoint
from registry import InvalidArgument, NotFound
from registry.streams import new_webhook

MAX_PER_ORG = 20


def _state(endpoint: Endpoint) -> dict[str, Any]:
    stats = endpoint.stats
    return {
        **endpoint.hook.view(),
        "queued": len(endpoint.queue),
        "delivered": stats.delivered,
        "deliveries": stats.deliveries,
        "failures": stats.failures,
        "dropped": stats.dropped,
    }


def webhook_actions(hub: StreamHub) -> dict[str, Handler]:
    webhooks = hub.webhooks

    def endpoint(call: Call) -> Endpoint:
        webhook_id = call.param("webhookId")
        found = webhooks.endpoints.get(webhook_id)
        if found is None or found.hook.orgId != call.org.orgId:
            raise NotFound(f"webhook {webhook_id!r:.70} does not exist")
        return found

    async def create(call: Call) -> Response:
        hook = new_webhook(call.org.orgId, call.body)
        for product_key in hook.productKeys:
            await call.registry.get_product(call.org.orgId, product_key)
        if len(webhooks.of_org(call.org.orgId)) >= MAX_PER_ORG:
            raise InvalidArgument(f"an organisation has at most {MAX_PER_ORG} webhooks")
        await hub.store.put_webhook(hook)
        webhooks.add(hook)
        return ok(hook.view(with_secret=True))

    async def get(call: Call) -> Response:
        return ok(_state(endpoint(call)))

    async def list_(call: Call) -> Response:
        return ok([_state(e) for e in webhooks.of_org(call.org.orgId)])

    async def delete(call: Call) -> Response:
        webhook_id = endpoint(call).hook.webhookId
        await hub.store.delete_webhook(webhook_id)
        await webhooks.remove(webhook_id)
        return ok()

    async def deliveries(call: Call) -> Response:
        """The endpoint's newest delivery attempts, newest first."""
        return ok(list(reversed(endpoint(call).attempts)))

    return {
        "create": create,
        "get": get,
        "list": list_,
        "delete": delete,
        "deliveries": deliveries,
    }
