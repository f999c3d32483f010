"""Which hub replica ingests an edge: rendezvous (highest random weight) hashing.

Why edges are assigned rather than messages shared out (MQTT shared subscriptions): the
hub keeps each lane of an edge in order by refusing a batch whose predecessor is not
stored yet (``EventBatch.follows``, a gap ``Ack``). A shared subscription deals an edge's
back-to-back batches round-robin to different replicas; the second one reaches its replica
while the first is still being committed by the other, is refused, and the edge rewinds:
under load a lane would thrash. One owner per edge keeps today's single-consumer order.

Rendezvous hashing needs no coordinator and no stored table: every replica computes the
same owner from the same set of live replicas, and when a replica dies only its own edges
move (each to the live replica that scores highest for it); when it comes back, they move
back. Pure: no I/O, no clock.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection


def score(edge_id: str, replica_id: str) -> int:
    """A stable pseudo-random weight of (edge, replica), the same on every host."""
    digest = hashlib.blake2b(f"{edge_id}\x00{replica_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def owner_of(edge_id: str, replicas: Collection[str]) -> str | None:
    """The replica that ingests ``edge_id`` among ``replicas`` (None when there is none)."""
    if not replicas:
        return None
    return max(replicas, key=lambda replica: (score(edge_id, replica), replica))
