"""Event time: what the hub does when a device event arrives or time passes.

Ingest places each batch once (:mod:`hub.placement`: one device lookup, one last-seen
touch, events of unknown or foreign devices refused for quarantine) and hands the placed
events to the :class:`~hub.handlers.router.DeviceEventRouter`; every feature is one handler
there (help calls first, then device state, supervision, doors, parcels, water, bins, the
wellbeing watch; the list is :mod:`hub.handlers.features`). Handlers run inside ingest's
transaction and return :class:`~hub.domain.effects.Effects` for after the commit.

What the API reads and edits (records, acts of workers and operators) lives in
:mod:`hub.services`; the pure rules both use live in :mod:`hub.domain`.
"""
