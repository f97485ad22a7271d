"""The registry's errors: each carries an EnOS-style code and the HTTP status it maps to.

The wire faces (REST API, MQTT replies) translate these; the registry itself knows
nothing of HTTP beyond the number it suggests.
"""

from __future__ import annotations


class RegistryError(Exception):
    """Base class. `code` is the EnOS-style API code, `status` the HTTP status."""

    code = 99500
    status = 500

    def __init__(self, msg: str) -> None:
        super().__init__(msg)
        self.msg = msg


class InvalidArgument(RegistryError):
    code = 99400
    status = 400


class Unauthorized(RegistryError):
    code = 99401
    status = 401


class Forbidden(RegistryError):
    code = 99403
    status = 403


class NotFound(RegistryError):
    code = 99404
    status = 404


class Conflict(RegistryError):
    code = 99409
    status = 409


class ModelNotFound(InvalidArgument):
    """A product names a thing model that does not exist: EnOS v2.1's 11699."""

    code = 11699


class DeviceKeyExists(Conflict):
    code = 11702


class DeviceLimitExceeded(Conflict):
    code = 11739


class StorageUnavailable(RegistryError):
    """The store cannot read or write (disk full, read-only, not a database, ...).

    Nothing of the failed operation was stored; the message names the file and why.
    """

    code = 99503
    status = 503
