"""The errors of device profiles, shared by the edge and the hub.

    ProfileError        a profile file is invalid (the message names the file and the field)
    MappingError        a frame, payload or command its profile cannot map

Why its own module: the profile models (JSON extraction, MQTT command rendering), the loader
and the edge's CB-100 frame mapping all raise these, and the models must not import the
mapping. Why not subclasses of the edge's ``EdgeError``: the hub checks profiles too, and
``profiles`` imports neither side (``tests/test_import_graph.py``); the edge re-exports
``ProfileError`` from ``edge.errors`` as it does ``ConfigError``.
"""

from __future__ import annotations


class ProfileError(Exception):
    """A device profile is invalid. The message names the file and the field."""


class MappingError(Exception):
    """A frame, payload or command its profile cannot map. ``reason`` is a short counter
    key: ``unknown_type``, ``payload_short``, ``out_of_range``, ``unknown_command``,
    ``bad_args``, ``missing_field``, ``bad_type``, ``no_match``, ``not_writable``."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason
