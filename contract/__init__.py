"""The message contract between edge agents and the hub.

Both sides import this package and nothing else of each other, so the wire format has
exactly one definition. The contract is described for humans in ``docs/contract.md``.
"""

from contract import topics
from contract.envelope import (
    Ack,
    Command,
    CommandResult,
    ContractError,
    EdgeStatus,
    Event,
    EventBatch,
    HubStatus,
    Lane,
)

__all__ = [
    "Ack",
    "Command",
    "CommandResult",
    "ContractError",
    "EdgeStatus",
    "Event",
    "EventBatch",
    "HubStatus",
    "Lane",
    "topics",
]
