"""What a read-only access key may call: actions that read and change nothing. Every
other action (a write, or one added later and not listed here) is refused with 403."""

from __future__ import annotations

from registry import Forbidden, Organization

READ_ACTIONS = frozenset(
    {
        "get",
        "list",
        "search",
        "getLatest",
        "listMessages",
        "getCaCert",
        "getConnectBlock",
        "stats",
        "sync",
        "deliveries",
    }
)


def check_permission(org: Organization, resource: str, action: str) -> None:
    if org.permission == "full" or action in READ_ACTIONS:
        return
    raise Forbidden(
        f"this access key is read only: it may list and get, not {resource}?action={action}"
        " (an access key with full access can)"
    )
