"""Who may see and do what: roles, the authenticated principal, and the grid scope rules.

Pure rules, no I/O: the API layer builds a :class:`Principal` from a token, services and
routes ask it questions. A grid worker is bound to the grids of their ``workers`` row;
everyone else on the staff sees every grid. Medical notes are narrower still (issue #4):
operators, and workers of that household's grid. The wellbeing watch's activity data and
welfare checks (issue #15) go to the resident's grid worker, the community station
(operators) and the desk (hotline), and to no one else: not even an admin.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Role(StrEnum):
    ADMIN = "admin"
    OPERATOR = "operator"
    HOTLINE = "hotline"  # the hotline desk (热线坐席)
    WORKER = "worker"  # a grid worker (网格员), bound to one or more grids
    EDGE = "edge"  # an edge agent: a machine identity, never a user account


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller."""

    kind: str  # "user" | "token" | "edge"
    name: str
    role: Role
    user_id: int | None = None
    worker_id: int | None = None  # the workers row a worker account acts as
    grid_ids: frozenset[int] = field(default_factory=frozenset)

    @property
    def actor(self) -> str:
        """How the audit log names this caller, e.g. ``user:alice``."""
        return f"{self.kind}:{self.name}"

    def sees_all_grids(self) -> bool:
        return self.role in (Role.ADMIN, Role.OPERATOR, Role.HOTLINE)

    def sees_grid(self, grid_id: int | None) -> bool:
        return self.sees_all_grids() or (grid_id is not None and grid_id in self.grid_ids)

    def may_read_medical_notes(self, household_grid_id: int | None) -> bool:
        if self.role is Role.OPERATOR:
            return True
        return self.role is Role.WORKER and household_grid_id in self.grid_ids

    def may_see_wellbeing(self, household_grid_id: int | None) -> bool:
        """Activity data and welfare checks of a household (issue #15)."""
        if self.role in (Role.OPERATOR, Role.HOTLINE):
            return True
        return self.role is Role.WORKER and household_grid_id in self.grid_ids
