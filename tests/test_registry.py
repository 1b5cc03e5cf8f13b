import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from activities.registry import LookupPartiesInput, RegistryStore
from config.yaml_file import FileError, load_yaml_model
from schemas.registry import RegistryFile

from .conftest import DEMO_REGISTRY


def ducha(db_url: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "workers.cli", *args],
        env={"DUCHA_DATABASE_URL": db_url, "PATH": "/usr/bin:/bin",
             "DUCHA_DATA_DIR": os.environ["DUCHA_DATA_DIR"]},
        capture_output=True, text=True, timeout=60,
    )


def demo() -> dict:
    return yaml.safe_load(DEMO_REGISTRY.read_text(encoding="utf-8"))


def test_demo_registry_has_every_agency_and_20_units():
    reg = load_yaml_model(DEMO_REGISTRY, RegistryFile)
    assert {a.code for a in reg.agencies} == {
        "law_office", "discipline", "court", "procuratorate", "justice",
        "tour_office", "coordination_group", "county_committee",
    }
    assert len(reg.units) >= 20
    assert all(u.liaison.name and u.leader.name for u in reg.units)


async def test_load_is_an_upsert_and_reports_changes(pool):
    store = RegistryStore(pool)
    reg = load_yaml_model(DEMO_REGISTRY, RegistryFile)
    first = await store.load(reg)
    assert len(first.added) == len(reg.agencies) + len(reg.units)
    second = await store.load(reg)
    assert second.added == [] and second.updated == []
    data = demo()
    data["units"][0]["liaison"]["name"] = "新联络员"
    changed = await store.load(RegistryFile.model_validate(data))
    assert changed.updated == [data["units"][0]["code"]]
    unit = await store.get(data["units"][0]["code"])
    assert unit.liaison.name == "新联络员"
    # secrets were generated once and kept across loads
    secret = await pool.fetchval("SELECT callback_secret FROM parties WHERE code='law_office'")
    assert secret.startswith("whsec_")
    await store.load(reg)
    assert await pool.fetchval("SELECT callback_secret FROM parties WHERE code='law_office'") == secret


async def test_require_parties_activity_names_unknown_codes(pool):
    from temporalio.exceptions import ApplicationError

    store = RegistryStore(pool)
    await store.load(load_yaml_model(DEMO_REGISTRY, RegistryFile))
    out = await store.lookup_parties(LookupPartiesInput(codes=["court", "market_regulation", "nope"]))
    assert set(out.found) == {"court", "market_regulation"} and out.missing == ["nope"]
    with pytest.raises(ApplicationError, match="nope"):
        await store.require_parties(LookupPartiesInput(codes=["nope"]))


def _bad(tmp_path: Path, mutate) -> Path:
    data = demo()
    mutate(data)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


BAD_FILES = {
    "unknown agency code": (lambda d: d["agencies"][2].update(code="police"), "agencies.2.code"),
    "duplicate unit code": (lambda d: d["units"][5].update(code=d["units"][1]["code"]), "units.5.code"),
    "malformed url": (lambda d: d["units"][3]["callback"].update(url="htp:/nowhere"), "units.3.callback.url"),
    "missing liaison": (lambda d: d["units"][7].pop("liaison"), "units.7.liaison"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_file_is_refused_with_line_and_reason(tmp_path, case):
    mutate, field = BAD_FILES[case]
    path = _bad(tmp_path, mutate)
    with pytest.raises(FileError) as info:
        load_yaml_model(path, RegistryFile)
    message = str(info.value)
    assert field in message, message
    line = int(message.split(":")[1])
    text = path.read_text(encoding="utf-8").splitlines()
    assert 1 <= line <= len(text)


def test_cli_bad_file_changes_nothing(db_url, tmp_path):
    good = ducha(db_url, "registry", "load", str(DEMO_REGISTRY))
    assert good.returncode == 0, good.stderr
    before = json.loads(ducha(db_url, "registry", "list", "--json").stdout)
    path = _bad(tmp_path, lambda d: (d["units"][0].update(name="改名了"), d["units"][4].update(code="Bad Code")))
    out = ducha(db_url, "registry", "load", str(path))
    assert out.returncode == 2
    assert "units.4.code" in out.stderr and str(path) in out.stderr
    after = json.loads(ducha(db_url, "registry", "list", "--json").stdout)
    assert after == before


def test_cli_list_json(db_url):
    assert ducha(db_url, "registry", "load", str(DEMO_REGISTRY)).returncode == 0
    out = ducha(db_url, "registry", "list", "--json")
    data = json.loads(out.stdout)
    assert len(data["agencies"]) == 8 and len(data["units"]) >= 20
    assert "callback_secret" not in out.stdout and "whsec_" not in out.stdout


async def test_operators_are_loaded_and_authorization_is_logged(pool):
    from temporalio.exceptions import ApplicationError

    from activities.registry import AuthorizeInput
    from config.chain_key import ChainKey

    store = RegistryStore(pool, ChainKey.generate())
    await store.load(load_yaml_model(DEMO_REGISTRY, RegistryFile))

    async def authorize(operator: str, agency: str, action: str) -> str | None:
        try:
            await store.authorize(AuthorizeInput(operator=operator, agency=agency, action=action, workflow_id="wf-x"))
            return None
        except ApplicationError as exc:
            assert exc.non_retryable and exc.type == "Unauthorized"
            return str(exc)

    assert await authorize("李娜", "law_office", "rectification.review") is None
    assert await authorize("杨帆", "court", "clue.transfer") is None
    assert "not registered" in await authorize("张三", "court", "clue.transfer")
    assert "belongs to court" in await authorize("杨帆", "law_office", "clue.acknowledge")
    assert "lacks role supervisor" in await authorize("吴敏", "justice", "clue.extend_deadline")
    data = demo()
    data["agencies"][3]["operators"] = [o for o in data["agencies"][3]["operators"] if o["id"] != "黄静"]
    report = await store.load(RegistryFile.model_validate(data))
    assert data["agencies"][3]["code"] in report.updated
    assert "deactivated" in await authorize("黄静", "procuratorate", "clue.transfer")
    log = await pool.fetch("SELECT operator, allowed FROM authorization_log WHERE workflow_id = 'wf-x' ORDER BY id")
    assert [(r["operator"], r["allowed"]) for r in log] == [
        ("李娜", True), ("杨帆", True), ("张三", False), ("杨帆", False), ("吴敏", False), ("黄静", False)]


def test_duplicate_operator_id_is_refused(tmp_path):
    def clash(d):
        d["units"][2]["operators"][0]["id"] = d["agencies"][0]["operators"][0]["id"]
    path = _bad(tmp_path, clash)
    with pytest.raises(FileError, match=r"units\.2\.operators\.0\.id"):
        load_yaml_model(path, RegistryFile)
