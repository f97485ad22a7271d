"""Gatehouse's running service: the REST API and `gatehouse serve` (the MQTT broker
joins it in the broker-core issue)."""
