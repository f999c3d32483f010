"""Errors of the edge agent.

    EdgeError
    ├── ConfigError (re-exported from contract.config_file: bad or missing config file)
    ├── ProfileError (re-exported from profiles.errors: a device profile file is invalid)
    ├── OutboxError         the outbox cannot store an event (disk full, I/O error)
    ├── TransportError      a port or connection is unavailable
    ├── DeviceError         a device answered with an error, or a frame could not be mapped
    └── CommandExpired      a hub command reached its deadline before it went to the device

Third-party exceptions (pyserial, sqlite3, paho) are translated into these at the module
that calls the library.
"""

from __future__ import annotations

from profiles.errors import ProfileError

__all__ = [
    "CommandExpired",
    "DeviceError",
    "EdgeError",
    "OutboxError",
    "ProfileError",
    "TransportError",
]


class EdgeError(Exception):
    """Base of every error the edge raises on purpose."""


class OutboxError(EdgeError):
    """An event could not be stored in the outbox."""


class TransportError(EdgeError):
    """A serial port or network connection is not usable right now."""


class DeviceError(EdgeError):
    """A device reported an error or sent something its profile cannot map."""


class CommandExpired(EdgeError):
    """A hub command's deadline passed before it was written to the device: not executed."""
