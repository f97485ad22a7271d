"""`/connection` actions: where the organisation's devices connect (`get`: the MQTT port
and the MQTT-over-TLS port, or null when TLS is off), for consoles and provisioning
tools. The host is the one the caller reached the API on, or the machine's address."""

from __future__ import annotations

from starlette.responses import Response

from broker.api.calls import Call, Handler
from broker.api.envelope import ok


def connection_actions(mqtt_port: int, mqtts_port: int | None) -> dict[str, Handler]:
    async def get(call: Call) -> Response:
        return ok({"mqttPort": mqtt_port, "mqttsPort": mqtts_port or None})

    return {"get": get}
