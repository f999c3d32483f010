"""The hub's web pages (issue #12), served by the hub itself on the API's port.

Static HTML and small ES modules, no build step and no inline script, so a strict
Content-Security-Policy holds (:mod:`hub.web.security`); the pages call the ordinary API
(``/api/v1/...``) with an HttpOnly session cookie (:mod:`hub.web.session`) and listen to the
live streams (:mod:`hub.api.routes.stream`, ``docs/web.md``).

Layout of ``hub/web/static/``::

    pages/<name>.html   one file per page, served at /<name> (login, worker, ...)
    js/<name>.js        its module; shared helpers: api.js (fetch + CSRF + 401 -> login),
                        i18n.js (中文 default, English toggle), live.js (SSE with replay and
                        offline/online status), dom.js (element builder, times), shell.js
                        (the header: title, language, logout, connection status)
    css/app.css         one style sheet for every page
    icons/, manifest.webmanifest

How to add a page (e.g. the desk board):

1. ``static/pages/desk.html``: copy ``worker.html``'s head (style sheet, manifest, icon) and
   its ``<header>``; load ``<script type="module" src="/static/js/desk.js">``. No inline
   script or ``style=`` attribute: the CSP refuses them.
2. ``static/js/desk.js``: ``const me = await startShell({titleKey: ..., roles: [...]})``
   (logs in if needed, sets up the header and language), then ``api()`` for data and
   ``openLive()`` for live updates; register its strings with ``addStrings({...})``.
3. Nothing to register in Python: :mod:`hub.web.pages` serves every ``pages/*.html``. Add
   the page to ``login.js``'s ``HOME`` if a role should land on it after login, to
   ``scripts/screenshots.py``'s ``SHOTS``, and give it a browser test in ``tests/browser``.
"""
