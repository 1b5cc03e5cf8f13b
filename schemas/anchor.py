"""Anchors of the audit chains: the head of each chain as seen at one moment, kept outside
PostgreSQL (LedgerAnchor workflow history, archive manifests) so a rewound chain is caught."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

CHAINS = ("ledger_events", "authorization_log")


class ChainHead(BaseModel):
    chain: str = Field(description="ledger_events or authorization_log")
    last_id: int | None = Field(None, description="id of the newest row; None: empty chain")
    rows: int = Field(0, description="rows in the chain up to last_id")
    hash: str | None = Field(None, description="hash (HMAC-SHA256 since 0015) of the newest row")
    keyed_after: int = Field(0, description="rows with a greater id must carry the keyed HMAC")
    missing: bool = Field(False, description="the chain's head row was not there (deleted)")


class Anchor(BaseModel):
    at: datetime
    heads: list[ChainHead]

    def head(self, chain: str) -> ChainHead | None:
        return next((h for h in self.heads if h.chain == chain), None)


class AnchorStart(BaseModel):
    interval_minutes: int = Field(5, ge=1, le=1440, description="minutes between two anchors")
    keep: int = Field(100, ge=1, le=1000, description="anchors kept in the state (and the query)")
    anchors_per_run: int = Field(500, ge=1, le=2000, description="continue as new after this many")
    anchors: list[Anchor] = Field(default_factory=list, description="carried over by continue-as-new")


class AnchorsQuery(BaseModel):
    limit: int = Field(20, ge=1, le=1000)
