"""The device gate: admission, the topic ACL, presence, routing, gateways, commands to
devices and the write-behind sinks, as plain Python on identities and bytes, behind
`Gate`, the one face the amqtt adapter (`broker/amqtt_plugin.py`) calls."""

from broker.gate.face import Gate, GateConfig, GateStats, gateway_posts

__all__ = ["Gate", "GateConfig", "GateStats", "gateway_posts"]
