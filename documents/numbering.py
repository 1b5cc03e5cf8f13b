"""发文字号: the document number ledger in PostgreSQL (migration 0013).

A number is taken in one transaction with the document: the series row (机关代字, year) is
locked and raised by one, the document is recorded, the caller writes its file, and only then
does the transaction commit. A document that fails to render gives its number back (the
transaction rolls back), two writers never get the same number (the series row lock and the
primary key), and the numbers of a series are 1, 2, 3 … without gaps. A document written again
(same kind and subject) keeps its number and its 成文日期."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import date

import asyncpg

from documents.gongwen import doc_number

KINDS = ("bulletin", "notice", "annual_report")


@dataclass
class Issued:
    """A document's number while its file is being written (inside the numbering transaction)."""

    doc_no: str
    prefix: str
    year: int
    number: int
    issued_on: date
    reused: bool  # the document had its number already
    _conn: asyncpg.Connection

    async def written(self, sha256: str) -> None:
        """Record the digest of the file written under this number."""
        await self._conn.execute(
            "UPDATE documents SET sha256 = $1, rendered_at = now() WHERE doc_no = $2", sha256, self.doc_no)


class _Taken(Exception):
    """Another writer recorded the same document first: start over and reuse its number."""


class DocumentNumbers:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    @asynccontextmanager
    async def issue(self, *, prefix: str, kind: str, subject: str, title: str,
                    issued_on: date) -> AsyncIterator[Issued]:
        """The document's number (a new one in the series of `prefix` and `issued_on`'s year, or
        the one it has); the number is kept only if the block finishes without an exception."""
        if kind not in KINDS:
            raise ValueError(f"unknown document kind {kind!r}")
        async with self.pool.acquire() as conn:
            for _ in range(3):
                tr = conn.transaction()
                await tr.start()
                try:
                    issued = await self._take(conn, prefix, kind, subject, title, issued_on)
                except _Taken:
                    await tr.rollback()
                    continue
                except BaseException:
                    await tr.rollback()
                    raise
                try:
                    yield issued
                except BaseException:
                    await tr.rollback()
                    raise
                await tr.commit()
                return
            raise RuntimeError(f"could not number {kind} {subject}: kept being taken concurrently")

    async def _take(self, conn: asyncpg.Connection, prefix: str, kind: str, subject: str, title: str,
                    issued_on: date) -> Issued:
        row = await conn.fetchrow(
            "SELECT prefix, year, number, doc_no, issued_on FROM documents WHERE kind = $1 AND subject = $2 "
            "FOR UPDATE", kind, subject)
        if row is not None:
            await conn.execute("UPDATE documents SET title = $1 WHERE doc_no = $2", title, row["doc_no"])
            return Issued(row["doc_no"], row["prefix"], row["year"], row["number"], row["issued_on"], True, conn)
        year = issued_on.year
        await conn.execute("INSERT INTO document_series (prefix, year) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                           prefix, year)
        number = await conn.fetchval(
            "UPDATE document_series SET last_no = last_no + 1 WHERE prefix = $1 AND year = $2 RETURNING last_no",
            prefix, year)
        doc_no = doc_number(prefix, year, number)
        inserted = await conn.fetchval(
            "INSERT INTO documents (prefix, year, number, doc_no, kind, subject, title, issued_on) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (kind, subject) DO NOTHING RETURNING number",
            prefix, year, number, doc_no, kind, subject, title, issued_on)
        if inserted is None:
            raise _Taken
        return Issued(doc_no, prefix, year, number, issued_on, False, conn)
