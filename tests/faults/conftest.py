"""The fault-injection suite (docs/reliability.md): scenarios marked `faults` run with
`make faults`; test_fast.py runs inside `make test` as well. At the end of the session the
faults injected and the outcomes checked are summed up."""

from __future__ import annotations

from collections import Counter

from .harness import REPORTS


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    if not REPORTS:
        return
    tr = terminalreporter
    tr.section("fault injection")
    for report in REPORTS:
        tr.write_line(report.line())
    faults: Counter = Counter()
    for report in REPORTS:
        for part in report.faults_text().split(", "):
            if "=" in part:
                name, _, n = part.rpartition("=")
                faults[name] += int(n)
    business = sum(r.business_workflows for r in REPORTS)
    deliveries = sum(r.delivery_workflows for r in REPORTS)
    timers = sum(r.timers_checked for r in REPORTS)
    lost = sum(len(r.lost) for r in REPORTS)
    duplicated = sum(len(r.duplicated) for r in REPORTS)
    wrong = sum(len(r.wrong) for r in REPORTS)
    seconds = sum(r.wall_seconds for r in REPORTS)
    tr.write_line(
        f"TOTAL faults injected: {sum(faults.values())} ("
        + ", ".join(f"{k}={v}" for k, v in faults.items())
        + f") | workflows checked: {business} business + {deliveries} deliveries, {timers} timers"
        f" | lost={lost} duplicated={duplicated} wrong={wrong} | {seconds:.0f}s in scenarios"
    )
