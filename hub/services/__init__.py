"""API time: the records the hub's API reads and edits, and the acts of people on them.

Cases (acknowledge, resolve, reassign, the escalation sweep), the registry, rosters, tasks,
the desk board, KPIs, quarantine listings, remote configuration. Each function runs in the
caller's transaction. What happens when a device event arrives lives in
:mod:`hub.handlers` (event time); the wellbeing watch (``hub.services.wellbeing``) still
holds both its event handler and its records here.
"""
