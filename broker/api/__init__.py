"""The REST API (FastAPI), EnOS connection-service shape."""

from broker.api.app import API_PREFIX, create_app

__all__ = ["API_PREFIX", "create_app"]
