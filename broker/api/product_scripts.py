"""`/product-scripts` actions: a Custom product's data-parsing script (Alibaba's
UpdateThingScript / GetThingScript), uploaded, read, deleted, and tried on given bytes
or JSON without touching any device (the console's debug run).

An upload is loaded in the engine before it is stored, so a script that does not
compile, runs away at load or lacks rawDataToProtocol or protocolToRawData is refused
with the reason. Uploads and dry runs use a script runner of the API's own, so trying
scripts never takes a worker from devices.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

from starlette.responses import Response

from broker.api.calls import Call, Handler
from broker.api.envelope import ok
from broker.gate.payload_scripts import ScriptRunner
from broker.protocol.scripts import (
    DECODE,
    ENCODE,
    REQUIRED,
    TRANSFORM,
    PayloadScript,
    ScriptError,
    check_source,
)
from registry import InvalidArgument
from registry.scripts import script_upload

DIRECTIONS = ("up", "down")
_runner: ScriptRunner | None = None


def _engine() -> ScriptRunner:
    global _runner  # one per process, made on first use (tests build many apps)
    if _runner is None:
        _runner = ScriptRunner(workers=1, max_waiting=16)
    return _runner


def _refused(exc: ScriptError) -> InvalidArgument:
    return InvalidArgument(f"the script cannot be used: {exc.message} (code {exc.code})")


async def upload(call: Call) -> Response:
    product_key = call.param("productKey")
    await call.registry.get_product(call.org.orgId, product_key)  # yours, or 404 first
    content = script_upload(call.body)
    try:
        check_source(content)
        missing = await _engine().once(content, PayloadScript.missing)
    except ScriptError as exc:
        raise _refused(exc) from None
    if missing:
        raise InvalidArgument(
            f"the script must define {' and '.join(REQUIRED)}; it has no {', '.join(missing)}"
            " (code 26006)"
        )
    script = await call.registry.put_product_script(call.org.orgId, product_key, call.body)
    view = script.view()
    view.pop("scriptContent")
    return ok(view)


async def get(call: Call) -> Response:
    script = await call.registry.get_product_script(call.org.orgId, call.param("productKey"))
    return ok(script.view())


async def delete(call: Call) -> Response:
    await call.registry.delete_product_script(call.org.orgId, call.param("productKey"))
    return ok()


async def debug(call: Call) -> Response:
    """Run the stored script (or `scriptContent` from the body) on `payloadHex` or
    `payloadBase64` (direction up: rawDataToProtocol, or transformPayload with `topic`)
    or on `payload`, a JSON object (direction down: protocolToRawData)."""
    body = call.body if isinstance(call.body, Mapping) else {}
    unknown = sorted(
        set(body)
        - {"direction", "payloadHex", "payloadBase64", "payload", "topic", "scriptContent"}
    )
    if unknown:
        raise InvalidArgument(f"unknown body field {unknown[0]}")
    direction = body.get("direction", "up")
    if direction not in DIRECTIONS:
        raise InvalidArgument(f"direction must be up or down, not {direction!r:.40}")
    if "scriptContent" in body:
        await call.registry.get_product(call.org.orgId, call.param("productKey"))
        source = script_upload({"scriptContent": body["scriptContent"]})
    else:
        stored = await call.registry.get_product_script(call.org.orgId, call.param("productKey"))
        source = stored.scriptContent
    if direction == "up":
        raw = _bytes_of(body)
        topic = body.get("topic")
        if topic is not None and (not isinstance(topic, str) or not topic):
            raise InvalidArgument("topic must be a topic string")

        def run(script: PayloadScript) -> Any:
            return script.transform(topic, raw) if topic else script.decode(raw)

        called = TRANSFORM if topic else DECODE
    else:
        message = body.get("payload")
        if not isinstance(message, dict) or not message:
            raise InvalidArgument("direction down needs payload, the JSON object to encode")

        def run(script: PayloadScript) -> Any:
            encoded = script.encode(message)
            return {
                "payloadHex": encoded.hex(),
                "payloadBase64": base64.b64encode(encoded).decode(),
            }

        called = ENCODE
    try:
        output = await _engine().once(source, run)
    except ScriptError as exc:
        return ok({"function": called, "code": exc.code, "message": exc.message, "output": None})
    return ok({"function": called, "code": 200, "message": "", "output": output})


def _bytes_of(body: Mapping[str, Any]) -> bytes:
    hex_text, b64_text = body.get("payloadHex"), body.get("payloadBase64")
    if (hex_text is None) == (b64_text is None):
        raise InvalidArgument("direction up needs one of payloadHex or payloadBase64")
    try:
        if hex_text is not None:
            if not isinstance(hex_text, str):
                raise ValueError
            text = hex_text.removeprefix("0x").replace(" ", "")
            raw = bytes.fromhex(text)
        else:
            if not isinstance(b64_text, str):
                raise ValueError
            raw = base64.b64decode(b64_text, validate=True)
    except (ValueError, binascii.Error):
        which = "payloadHex" if hex_text is not None else "payloadBase64"
        raise InvalidArgument(f"{which} is not valid {which[7:].lower()}") from None
    if not raw:
        raise InvalidArgument("the payload is empty")
    return raw


SCRIPT_ACTIONS: dict[str, Handler] = {
    "upload": upload,
    "get": get,
    "delete": delete,
    "debug": debug,
}
