"""Gatehouse's running service: `gatehouse serve`, the MQTT broker and the REST API in one
event loop over the registry (docs/architecture.md)."""
