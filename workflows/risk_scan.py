"""RiskScan (风险研判): the monthly look at each unit's risk indicators — public complaints, lost
administrative lawsuits, revoked reconsideration decisions (DOMAIN.md §4) — against thresholds;
each flagged unit gets a special inspection (专项督察, lead law_office, trigger indicator), never a
second one while one is open.

Indicator data is loaded with `ducha indicators load FILE.csv`; schedule `risk-scan` runs this
monthly with `{"period": null}` (the month before the scheduled time, Asia/Shanghai).
"""

from __future__ import annotations

import asyncio

from temporalio import workflow
from temporalio.common import SearchAttributeKey

with workflow.unsafe.imports_passed_through():
    from pydantic import ValidationError

    from rules.risk import flag_units, previous_period, window
    from schemas.inspection import TriggerType
    from schemas.risk import IndicatorQuery, RiskScanResult, RiskScanStart

from workflows import calls
from workflows.duty import CHINA
from workflows.inputs import require
from workflows.special import open_special_inspection

SCHEDULED_START = SearchAttributeKey.for_datetime("TemporalScheduledStartTime")
START_WINDOW = 20  # special inspections started at once


@workflow.defn(name="RiskScan", failure_exception_types=[ValidationError])
class RiskScan:
    @workflow.run
    async def run(self, start: RiskScanStart) -> RiskScanResult:
        start = require(start, RiskScanStart)
        at = workflow.info().typed_search_attributes.get(SCHEDULED_START) or workflow.now()
        period = start.period or previous_period(at.astimezone(CHINA).date())
        first, last = window(period, start.window_months)
        rows = (await calls.risk_indicators(IndicatorQuery(first_period=first, last_period=last))).rows
        flags = flag_units(rows, start.thresholds)
        result = RiskScanResult(period=period, first_period=first, units_with_data=len(rows), flagged=flags)
        chosen = flags[:start.max_starts]
        result.not_started = [f.unit for f in flags[start.max_starts:]]
        ref = workflow.info().workflow_id
        for i in range(0, len(chosen), START_WINDOW):
            opened = await asyncio.gather(*(
                open_special_inspection(f.unit, trigger=TriggerType.INDICATOR, ref=ref)
                for f in chosen[i:i + START_WINDOW]))
            for link, started in opened:
                (result.started if started else result.already_open).append(link)
        span = period if first == last else f"{first}~{last}"
        lines = [f"**风险研判 {span}**：{len(rows)} 个单位有指标数据，{len(flags)} 个超过阈值",
                 f"启动专项督察 {len(result.started)} 个，已有进行中的 {len(result.already_open)} 个"]
        lines += [f"- {f.unit}：{'；'.join(f.reasons)}" for f in flags[:30]]
        if result.not_started:
            lines.append(f"超过单次上限未启动：{'、'.join(result.not_started[:30])}")
        workflow.set_current_details("\n\n".join(lines))
        return result
