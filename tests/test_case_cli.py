"""`ducha clue new/show` and `ducha inspection start/show/coverage` against the time-skipping
server and this module's worker: the CLI starts and queries the workflows through their classes
and names them with schemas/ids.py; a case that does not exist is a one-line error."""

from __future__ import annotations

import json
import os
from datetime import timedelta, timezone

from schemas import ids

from .support import run_cli, wait_for_async

CHINA = timezone(timedelta(hours=8))


def cli_env(env, db_url: str) -> dict[str, str]:
    environment, tq = env
    return {**os.environ, "DUCHA_DATABASE_URL": db_url, "DUCHA_TASK_QUEUE": tq,
            "DUCHA_TEMPORAL_ADDRESS": environment.client.service_client.config.target_host}


async def shown(args: list[str], env: dict[str, str]) -> dict:
    """`ducha ... show --json`, retried until the new workflow answers its first query."""
    answers: list[str] = []

    async def attempt() -> int:
        code, out, _ = await run_cli(*args, "--json", env=env)
        answers.append(out)
        return code

    await wait_for_async(attempt, lambda code: code == 0, timeout=60)
    return json.loads(answers[-1])


async def test_clue_new_names_the_workflow_and_show_reads_it(env, db_url):
    environment, _ = env
    e = cli_env(env, db_url)
    today = (await environment.get_current_time()).astimezone(CHINA).date()
    code, out, err = await run_cli(
        "clue", "new", "--route", "to_law_office", "--source", "court", "--channel", "judgment_enforcement",
        "--importance", "important", "--discovered-on", today.isoformat(), "--unit", "market_regulation",
        "--title", "执行中发现行政处罚程序违法", "--reported-by", "杨帆", env=e)
    assert code == 0, err
    wid = out.strip()
    assert ids.kind_of(wid) == "clue" and wid == ids.clue(f"{today.year}-0001")
    status = await shown(["clue", "show", wid.removeprefix(ids.CLUE)], e)
    assert (status["clue_no"], status["stage"], status["source"]) == (f"{today.year}-0001", "registered", "court")
    assert (await shown(["clue", "show", wid], e))["clue_no"] == f"{today.year}-0001"  # what `clue new` printed
    code, out, _ = await run_cli("clue", "show", f"{today.year}-0001", env=e)
    assert code == 0 and f"线索 {today.year}-0001" in out

    code, out, err = await run_cli("clue", "show", "1999-9999", env=e)
    assert code != 0 and out == ""
    assert f"no such clue {ids.clue('1999-9999')}" in err and "Traceback" not in err


async def test_inspection_start_takes_the_next_free_id_and_show_reads_it(env, db_url):
    environment, _ = env
    e = cli_env(env, db_url)
    year = (await environment.get_current_time()).astimezone(CHINA).year
    started = []
    for _ in range(2):
        code, out, err = await run_cli("inspection", "start", "--unit", "housing", "--kind", "routine",
                                       "--lead", "coordination_group", "--year", str(year), env=e)
        assert code == 0, err
        started.append(out.strip())
    assert started == [ids.inspection(year, "routine", "housing"), ids.inspection(year, "routine", "housing", 2)]
    status = await shown(["inspection", "show", started[1]], e)
    assert (status["unit"], status["kind"], status["stage"]) == ("housing", "routine", "self_inspection")

    code, out, err = await run_cli("inspection", "show", ids.inspection(year, "joint", "housing"), env=e)
    assert code != 0 and "找不到督察" in err and "Traceback" not in err
    code, out, err = await run_cli("inspection", "coverage", "2099", env=e)
    assert code != 0 and f"no round {ids.annual_round(2099)}" in err and "Traceback" not in err
