"""A product's data-parsing script: the record, and the rules an upload must meet before
any engine sees it. Whether the script compiles is the engine's to say (the API asks it)."""

from __future__ import annotations

import hashlib
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from registry.errors import InvalidArgument

SCRIPT_TYPES = ("JavaScript",)  # Alibaba's ScriptType; Python 2.7 and PHP are not offered
MAX_SCRIPT_BYTES = 64 * 1024


class ProductScript(BaseModel):
    model_config = ConfigDict(frozen=True)

    productKey: str
    orgId: str
    scriptType: Literal["JavaScript"] = "JavaScript"
    scriptContent: str
    version: str  # a digest of the content: what an engine caches a compiled script by
    updatedAt: int

    def view(self) -> dict[str, Any]:
        return self.model_dump(exclude={"orgId"})


def script_upload(body: Any) -> str:
    """The scriptContent of an upload body, or InvalidArgument saying why."""
    if not isinstance(body, dict):
        raise InvalidArgument("the body must be a JSON object with scriptContent")
    unknown = sorted(set(body) - {"scriptType", "scriptContent"})
    if unknown:
        raise InvalidArgument(f"unknown body field {unknown[0]}; use scriptType, scriptContent")
    kind = body.get("scriptType", "JavaScript")
    if kind not in SCRIPT_TYPES:
        raise InvalidArgument(
            f"scriptType must be one of {', '.join(SCRIPT_TYPES)}, not {kind!r:.40}"
        )
    content = body.get("scriptContent")
    if not isinstance(content, str) or not content.strip():
        raise InvalidArgument("scriptContent is required: the script's JavaScript text")
    size = len(content.encode())
    if size > MAX_SCRIPT_BYTES:
        raise InvalidArgument(
            f"scriptContent is {size} bytes; a script may have at most {MAX_SCRIPT_BYTES}"
        )
    return content


def version_of(content: str) -> str:
    return hashlib.sha256(content.encode()).hexdigest()[:16]
