"""Accounts of people and how they prove who they are (issue #4).

* :mod:`hub.auth.passwords` — argon2id hashing (memory-hard), a decoy for unknown names;
* :mod:`hub.auth.tokens` — opaque bearer tokens, stored as digests, expiring, revocable;
* :mod:`hub.auth.throttle` — the failed-login policy and its table;
* :mod:`hub.auth.accounts` — the account rules and rows, for the API and the CLI;
* :mod:`hub.auth.login` — the login flow that ties them together;
* :mod:`hub.auth.cli` — ``python -m hub create-account`` to make the first admin.

Edge agents are machine identities with broker credentials; they never get an account.
The configured static API token (``HUB__API__TOKEN``) stays an admin credential for
bootstrap and automation; see :mod:`hub.api.deps`.
"""
