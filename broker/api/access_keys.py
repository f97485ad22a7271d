"""`/access-keys` actions: an organisation's extra access keys, each full access or read
only, as EnOS's "Device Management: Full Access" (README, "Access keys")."""

from __future__ import annotations

from starlette.responses import Response

from broker.api.calls import Call, Handler
from broker.api.envelope import ok


async def create(call: Call) -> Response:
    """`{"permission": "read"}` (the default) or `"full"`; the secret is shown only now."""
    key, secret = await call.registry.create_access_key(call.org.orgId, call.body)
    return ok({**key.view(), "accessSecret": secret})


async def list_(call: Call) -> Response:
    return ok([k.view() for k in await call.registry.list_access_keys(call.org.orgId)])


async def delete(call: Call) -> Response:
    await call.registry.delete_access_key(call.org.orgId, call.param("accessKey"))
    return ok()


ACCESS_KEY_ACTIONS: dict[str, Handler] = {"create": create, "list": list_, "delete": delete}
