"""docs/agencies.md stays true: every event type is documented, the example request verifies
with the documented snippet, and the retry table matches the default schedule."""

from __future__ import annotations

import re
from pathlib import Path

from config.settings import Settings
from schemas.events import EventType

DOC = (Path(__file__).resolve().parent.parent / "docs" / "agencies.md").read_text(encoding="utf-8")


def _block(after: str, lang: str = "") -> str:
    start = DOC.index(f"```{lang}\n", DOC.index(after)) + len(lang) + 4
    return DOC[start:DOC.index("```", start)]


def test_every_event_type_is_in_the_table():
    table = DOC[DOC.index("## 8."):DOC.index("## 9.")]
    documented = set(re.findall(r"^\| `([a-z_.]+)` \|", table, flags=re.M))
    assert documented == {t.value for t in EventType}


def test_the_example_request_verifies_with_the_documented_snippet():
    namespace: dict = {}
    exec(_block("## 2.", "python"), namespace)  # the snippet agencies will copy
    request = _block("## 1.")
    head, _, body = request.partition("\n\n")
    headers = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in head.splitlines()[1:])}
    secret = re.search(r"example secret: `(whsec_[^`]+)`", DOC).group(1)
    assert namespace["verify"](secret, headers, body.rstrip("\n").encode(), tolerance=10**10) == "clue-2026-0007.3"


def test_retry_table_matches_the_default_schedule():
    section = DOC[DOC.index("## 4."):DOC.index("## 5.")]
    rows = re.findall(r"^\| (\d) \|", section, flags=re.M)
    assert [int(r) for r in rows] == list(range(1, len(Settings().callback_retry_schedule) + 1))
