"""The web session cookie and its CSRF token: names and pure checks, no I/O.

The cookie carries the account's ordinary login token (``hub.auth.tokens``), so expiry,
revocation and a disabled account end a page's session exactly as they end an API
client's. It is HttpOnly (no script can read it, so an injected script cannot steal it),
``SameSite=Strict`` (another site's page never sends it) and ``Secure`` when the hub's
public address is https.

The CSRF token is derived from the session token, ``HMAC-SHA256(token, "csrf")``: the page
gets it from ``GET /web/session`` (readable only by a same-origin script) and sends it in
``X-CSRF-Token`` with every unsafe request. Nothing extra is stored; it dies with the
token. SameSite=Strict already stops cross-site requests in current browsers; the header
is the second lock, for older browsers and same-site subdomains.
"""

from __future__ import annotations

import hashlib
import hmac

SESSION_COOKIE = "hub_session"
CSRF_HEADER = "X-CSRF-Token"


def csrf_for(session_token: str) -> str:
    return hmac.new(session_token.encode(), b"csrf", hashlib.sha256).hexdigest()


def csrf_matches(session_token: str, presented: str | None) -> bool:
    if not presented:
        return False
    return hmac.compare_digest(csrf_for(session_token).encode(), presented.encode())
