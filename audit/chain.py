"""Verification of the audit chains (migrations/0007_audit_chain.sql, 0015_keyed_chain.sql).

Each chain (`ledger_events`, `authorization_log`) is walked in id order: every row must link to
the one before it and carry the right hash (HMAC-SHA256 with the chain key after the switch-over
row, SHA-256 before it), and the chain's head row must name the last row. That catches a
rewritten or deleted row, and a tail cut off without moving the head. What the database owner can
still do (cut the tail AND move the head back) is caught by comparing with anchors kept outside
PostgreSQL: the LedgerAnchor workflow's history and the archive manifests (schemas/anchor.py).
"""

from __future__ import annotations

import bisect

import asyncpg
from pydantic import BaseModel, Field

from config.chain_key import ALG_HMAC, ChainKey, sha256_link
from schemas.anchor import CHAINS, Anchor

CANONICAL = {"ledger_events": "ledger_event_canonical(t)", "authorization_log": "authorization_canonical(t)"}
MAX_FINDINGS_PER_CHAIN = 20

# What can be wrong, in the words `ducha audit verify` prints (Chinese / English).
KINDS = {
    "rewritten": "记录内容被改写 / row rewritten (its HMAC does not match its content)",
    "link_broken": "链接断开：此前的记录被删除或改动 / link broken: a row before it was deleted or changed",
    "unkeyed": "切换后出现未加密钥的记录 / unkeyed row after the switch to HMAC (written past the application)",
    "head_missing": "链头记录被删除 / the chain's head row was deleted",
    "truncated": "链尾被截断：末尾记录被删除 / tail truncated: the newest rows were removed",
    "head_mismatch": "链头与末尾记录不符 / the head does not match the last row",
    "head_moved_back": "链头被回拨 / head moved back behind an anchor",
    "anchor_mismatch": "与锚点不符：锚定的记录被改写 / an anchored row differs from its anchor",
    "anchor_count": "锚点之前的记录数不足：记录被删除 / rows missing up to an anchored row",
    "switch_moved": "切换点被改动 / the switch-over row differs from the anchor",
}


class Finding(BaseModel):
    chain: str
    kind: str
    row_id: int | None = None
    detail: str = ""

    @property
    def message(self) -> str:
        where = f" {self.chain}.id={self.row_id}" if self.row_id is not None else f" {self.chain}"
        return f"{KINDS[self.kind]}:{where}" + (f" ({self.detail})" if self.detail else "")


class ChainSummary(BaseModel):
    rows: int = 0
    keyed_rows: int = 0
    keyed_mismatches: int = 0  # all of them (findings stop at MAX_FINDINGS_PER_CHAIN)
    last_id: int | None = None
    hash: str | None = None


class ChainReport(BaseModel):
    rows: int = Field(0, description="ledger_events rows walked")
    ok: bool = True
    first_bad_id: int | None = None
    reason: str = ""
    chains: dict[str, ChainSummary] = Field(default_factory=dict)
    findings: list[Finding] = Field(default_factory=list)
    anchors_checked: int = 0

    @property
    def wrong_key(self) -> bool:
        """Every keyed row fails (more than one): the key is not the one that wrote them."""
        keyed = [c for c in self.chains.values() if c.keyed_rows]
        return bool(keyed) and sum(c.keyed_rows for c in keyed) > 1 and all(
            c.keyed_mismatches == c.keyed_rows for c in keyed)


class AuditChain:
    def __init__(self, pool: asyncpg.Pool, key: ChainKey) -> None:
        self.pool = pool
        self.key = key

    async def verify(self, batch: int = 5000, anchors: list[Anchor] | None = None) -> ChainReport:
        """Walk every chain and compare with the given anchors; report every misfit found (the
        first one also as first_bad_id/reason)."""
        anchors = anchors or []
        report = ChainReport(anchors_checked=len(anchors))
        async with self.pool.acquire() as conn:
            for chain in CHAINS:
                summary, findings = await self._verify_chain(conn, chain, batch, anchors)
                report.chains[chain] = summary
                report.findings += findings
        report.rows = report.chains["ledger_events"].rows
        if report.findings:
            first = report.findings[0]
            report.ok, report.first_bad_id, report.reason = False, first.row_id, first.message
        return report

    async def _verify_chain(self, conn: asyncpg.Connection, chain: str, batch: int,
                            anchors: list[Anchor]) -> tuple[ChainSummary, list[Finding]]:
        findings: list[Finding] = []

        def note(kind: str, row_id: int | None = None, detail: str = "") -> None:
            if len(findings) < MAX_FINDINGS_PER_CHAIN:
                findings.append(Finding(chain=chain, kind=kind, row_id=row_id, detail=detail))

        head = await conn.fetchrow(
            "SELECT last_id, hash, rows, keyed_after FROM audit_chain_heads WHERE chain = $1", chain)
        keyed_after = head["keyed_after"] if head else max(
            (a.head(chain).keyed_after for a in anchors if a.head(chain)), default=0)
        # Rows counted up to each anchored id, while walking (anchors may be many; rows millions).
        anchored = sorted({h.last_id for a in anchors if (h := a.head(chain)) and h.last_id is not None})
        counted: dict[int, int] = {}
        seen_hash: dict[int, str] = {}
        s = ChainSummary()
        prev: str | None = None
        last_id = 0
        while True:
            chunk = await conn.fetch(
                f"SELECT id, chain_alg, prev_hash, hash, {CANONICAL[chain]} AS canonical "
                f"FROM {chain} t WHERE id > $1 ORDER BY id LIMIT $2", last_id, batch)
            for r in chunk:
                i = bisect.bisect_left(anchored, r["id"])
                for a_id in anchored[len(counted):i]:  # anchored ids now passed
                    counted[a_id] = s.rows
                if r["prev_hash"] != prev:
                    note("link_broken", r["id"])
                if r["chain_alg"] == ALG_HMAC:
                    expected = self.key.mac(r["prev_hash"], r["canonical"])
                    s.keyed_rows += 1
                else:
                    expected = sha256_link(r["prev_hash"], r["canonical"])
                    if r["id"] > keyed_after:
                        note("unkeyed", r["id"], f"{r['chain_alg']}, switch-over after id {keyed_after}")
                if r["hash"] != expected:
                    note("rewritten", r["id"], r["chain_alg"])
                    s.keyed_mismatches += r["chain_alg"] == ALG_HMAC
                if i < len(anchored) and anchored[i] == r["id"]:
                    seen_hash[r["id"]] = r["hash"]
                prev, last_id, s.rows = r["hash"], r["id"], s.rows + 1
            if len(chunk) < batch:
                break
        for a_id in anchored[len(counted):]:
            counted[a_id] = s.rows
        s.last_id, s.hash = (last_id or None), prev

        if head is None:
            note("head_missing", None, f"last row id={s.last_id}")
        elif head["last_id"] != s.last_id or head["hash"] != s.hash or head["rows"] != s.rows:
            if head["last_id"] is not None and (s.last_id is None or head["last_id"] > s.last_id):
                note("truncated", head["last_id"],
                     f"head names id {head['last_id']} ({head['rows']} rows); the last row is id {s.last_id} "
                     f"({s.rows} rows)")
            else:
                note("head_mismatch", s.last_id,
                     f"head: id {head['last_id']}, {head['rows']} rows; chain: id {s.last_id}, {s.rows} rows")

        for anchor in anchors:
            h = anchor.head(chain)
            if h is None or h.missing or h.last_id is None:
                continue
            when = anchor.at.isoformat(timespec="seconds")
            if h.last_id not in seen_hash:
                note("truncated", h.last_id, f"the row anchored at {when} is gone; {h.rows} rows were anchored, "
                                             f"{s.rows} remain")
            elif seen_hash[h.last_id] != h.hash:
                note("anchor_mismatch", h.last_id, f"anchored at {when}")
            if counted.get(h.last_id, 0) < h.rows and h.last_id in seen_hash:
                note("anchor_count", h.last_id,
                     f"anchored at {when}: {h.rows} rows up to it, now {counted.get(h.last_id, 0)}")
            if head is not None and (head["last_id"] or 0) < h.last_id:
                note("head_moved_back", head["last_id"],
                     f"head id {head['last_id']} ({head['rows']} rows) is behind the anchor of {when}: "
                     f"id {h.last_id} ({h.rows} rows)")
            if head is not None and head["keyed_after"] != h.keyed_after:
                note("switch_moved", head["keyed_after"], f"anchored: after id {h.keyed_after}")
        return s, findings
