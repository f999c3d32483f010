"""The error a profile raises when a frame, payload or command cannot be mapped.

Why its own module: the profile models (JSON extraction, MQTT command rendering) and the
CB-100 frame mapping both raise it, and the models must not import the mapping module.
"""

from __future__ import annotations

from edge.errors import DeviceError


class MappingError(DeviceError):
    """A frame, payload or command its profile cannot map. ``reason`` is a short counter
    key: ``unknown_type``, ``payload_short``, ``out_of_range``, ``unknown_command``,
    ``bad_args``, ``missing_field``, ``bad_type``, ``no_match``, ``not_writable``."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason
