"""What every 公文 of the county needs from the registry: the county, the 发文机关 and the names
of the agencies it is sent or copied to."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

import asyncpg

from schemas.codes import AgencyCode


@dataclass(frozen=True)
class Letterhead:
    county: str
    issuer: str  # 发文机关, e.g. 西县委依法治县办
    names: dict[str, str]  # party code -> name

    def name(self, code: str) -> str:
        return self.names.get(code, code)

    def agencies(self, *codes: AgencyCode) -> list[str]:
        """The names of the agencies given, in that order (those in the registry)."""
        return [self.names[c.value] for c in codes if c.value in self.names]


def county_name(county: str, name: str) -> str:
    """An agency's name with its county: 西县 + 县委依法治县办 -> 西县委依法治县办."""
    if not county or name.startswith(county):
        return name
    if county.endswith("县") and name.startswith("县"):
        return county + name[1:]
    return county + name


async def letterhead(pool: asyncpg.Pool, issuer: str = "") -> Letterhead:
    """The registry's county and names; the issuer is `issuer` or the county's law_office."""
    county = await pool.fetchval("SELECT value FROM registry_meta WHERE key = 'county'") or ""
    names = {r["code"]: r["name"] for r in await pool.fetch("SELECT code, name FROM parties")}
    office = names.get(AgencyCode.LAW_OFFICE.value, "县委依法治县办")
    return Letterhead(county=county, issuer=issuer or county_name(county, office), names=names)


def today(zone: ZoneInfo) -> date:
    """成文日期 default: today in the county's time zone."""
    return datetime.now(zone).date()
