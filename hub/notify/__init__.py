"""How workers hear about cases: a live stream per worker (SSE), generic webhooks, WeCom
and DingTalk group robots, and SMS through an HTTP gateway (one retry path: ``http.py``).

Every channel implements :class:`hub.notify.base.Notifier`; :class:`Fanout` sends one
notification to all of them. A channel never blocks the caller (ingest, escalation): slow
deliveries run in background tasks, failures are retried, counted and logged.
"""
