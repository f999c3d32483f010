"""Where each grid sits: grid → community → street → district, read once per request.

The desk board filters by street, community and grid, and the care KPIs add up by any of
the four levels; both ask "which grids are in this area" and "which area is this grid in"
of the same small table (a district has hundreds of grids, not millions), so it is read
whole and answered in memory rather than joined into every query.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.db.schema import communities, districts, grids, streets
from hub.services.errors import NotFound


class Level(StrEnum):
    """The four administrative levels, and "all" above them."""

    ALL = "all"
    DISTRICT = "district"
    STREET = "street"
    COMMUNITY = "community"
    GRID = "grid"


#: The level a report at each level is broken down by (a grid: by worker).
CHILD_LEVEL: dict[Level, Level | None] = {
    Level.ALL: Level.DISTRICT,
    Level.DISTRICT: Level.STREET,
    Level.STREET: Level.COMMUNITY,
    Level.COMMUNITY: Level.GRID,
    Level.GRID: None,
}

LEVEL_LABELS: dict[Level, tuple[str, str]] = {
    Level.ALL: ("全部", "all"),
    Level.DISTRICT: ("区", "district"),
    Level.STREET: ("街道", "street"),
    Level.COMMUNITY: ("社区", "community"),
    Level.GRID: ("网格", "grid"),
}


@dataclass(frozen=True, slots=True)
class Unit:
    level: Level
    id: int | None  # None for Level.ALL
    name: str


@dataclass(frozen=True, slots=True)
class GridArea:
    """One grid and the units above it."""

    grid: Unit
    community: Unit
    street: Unit
    district: Unit

    def unit(self, level: Level) -> Unit:
        if level is Level.ALL:
            return ALL_UNITS
        return {
            Level.DISTRICT: self.district,
            Level.STREET: self.street,
            Level.COMMUNITY: self.community,
            Level.GRID: self.grid,
        }[level]


ALL_UNITS = Unit(Level.ALL, None, "全部 / all")


@dataclass(frozen=True, slots=True)
class Areas:
    """Every grid's area, keyed by grid id."""

    by_grid: dict[int, GridArea]

    def find(self, level: Level, unit_id: int | None) -> Unit:
        """The unit named, or NotFound."""
        if level is Level.ALL:
            return ALL_UNITS
        for area in self.by_grid.values():
            unit = area.unit(level)
            if unit.id == unit_id:
                return unit
        raise NotFound(f"{level.value} {unit_id} not found / {LEVEL_LABELS[level][0]}不存在")

    def grids_in(self, level: Level, unit_id: int | None) -> list[int]:
        """The ids of the grids inside a unit (every grid for Level.ALL)."""
        if level is Level.ALL:
            return sorted(self.by_grid)
        return sorted(g for g, area in self.by_grid.items() if area.unit(level).id == unit_id)

    def children(self, level: Level, unit_id: int | None, grid_ids: set[int]) -> list[Unit]:
        """The units one level down that hold any of ``grid_ids``, sorted by name."""
        child = CHILD_LEVEL[level]
        if child is None:
            return []
        found = {
            area.unit(child)
            for g, area in self.by_grid.items()
            if g in grid_ids and (level is Level.ALL or area.unit(level).id == unit_id)
        }
        return sorted(found, key=lambda u: (u.name, u.id or 0))

    def filter_grids(
        self,
        *,
        street_id: int | None = None,
        community_id: int | None = None,
        grid_id: int | None = None,
    ) -> list[int] | None:
        """Grids matching every filter given; None when no filter is given (all grids)."""
        if street_id is None and community_id is None and grid_id is None:
            return None
        return sorted(
            g
            for g, area in self.by_grid.items()
            if (street_id is None or area.street.id == street_id)
            and (community_id is None or area.community.id == community_id)
            and (grid_id is None or g == grid_id)
        )


async def load_areas(conn: AsyncConnection) -> Areas:
    query = (
        select(
            grids.c.id,
            grids.c.name,
            communities.c.id,
            communities.c.name,
            streets.c.id,
            streets.c.name,
            districts.c.id,
            districts.c.name,
        )
        .join_from(grids, communities, grids.c.community_id == communities.c.id)
        .join(streets, communities.c.street_id == streets.c.id)
        .join(districts, streets.c.district_id == districts.c.id)
    )
    by_grid = {}
    for g_id, g_name, c_id, c_name, s_id, s_name, d_id, d_name in await conn.execute(query):
        by_grid[g_id] = GridArea(
            grid=Unit(Level.GRID, g_id, g_name),
            community=Unit(Level.COMMUNITY, c_id, c_name),
            street=Unit(Level.STREET, s_id, s_name),
            district=Unit(Level.DISTRICT, d_id, d_name),
        )
    return Areas(by_grid)
