"""`ducha calendar ...` as a subprocess, against the test database and without one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from workers.embedded import free_port

ROOT = Path(__file__).resolve().parent.parent
CALENDAR_DIR = ROOT / "data" / "calendar"


def ducha(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "workers.cli", "calendar", *args],
        cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True, timeout=60,
    )


@pytest.fixture(scope="module")
def db_env(db_url: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The test database with 2026 loaded; no YAML directory, so answers must come from the DB."""
    empty = tmp_path_factory.mktemp("no-calendar-files")
    return {"DUCHA_DATABASE_URL": db_url, "DUCHA_CALENDAR_DIR": str(empty)}


@pytest.fixture(scope="module")
def loaded(db_env: dict[str, str]) -> dict[str, str]:
    first = ducha("load", str(CALENDAR_DIR / "2026.yaml"), **db_env)
    assert first.returncode == 0, first.stderr
    assert "首次加载" in first.stdout and "+ 2026-02-14 调休上班 春节调休上班" in first.stdout
    return db_env


def test_load_twice_reports_unchanged(loaded: dict[str, str]) -> None:
    again = ducha("load", str(CALENDAR_DIR / "2026.yaml"), **loaded)
    assert again.returncode == 0 and "未变" in again.stdout


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--from", "2026-09-30", "--working-days", "5"], "2026-10-13"),
        (["--from", "2026-02-13", "--working-days", "5"], "2026-02-27"),
        (["--from", "2026-04-15", "--monthly"], "2026-05-11"),
        (["--from", "2026-12-31", "--working-days", "5"], "2027-01-08 provisional"),
        (["--from", "2026-12-05", "--monthly"], "2027-01-11 provisional"),
    ],
)
def test_due_from_database(loaded: dict[str, str], args: list[str], expected: str) -> None:
    out = ducha("due", *args, **loaded)
    assert (out.returncode, out.stdout) == (0, expected + "\n"), out.stderr


def test_show_month(loaded: dict[str, str]) -> None:
    out = ducha("show", "2026-02", **loaded)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("2026年2月") and "正式安排" in lines[0]
    assert any("14班" in line and "15休" in line for line in lines)
    assert any("28班" in line for line in lines)
    assert any("图例" in line for line in lines)
    assert any("2月15日（周日）—2月23日（周一） 春节" in line for line in lines)
    assert "暂定" in ducha("show", "2027-02", **loaded).stdout


def test_without_database_uses_yaml_files() -> None:
    nowhere = {"DUCHA_DATABASE_URL": f"postgresql://postgres@127.0.0.1:{free_port()}/none"}
    out = ducha("due", "--from", "2026-02-13", "--working-days", "5",
                DUCHA_CALENDAR_DIR=str(CALENDAR_DIR), **nowhere)
    assert (out.returncode, out.stdout) == (0, "2026-02-27\n")
    assert "YAML" in out.stderr or "yaml" in out.stderr


def test_without_database_or_files_is_provisional(tmp_path: Path) -> None:
    nowhere = {"DUCHA_DATABASE_URL": f"postgresql://postgres@127.0.0.1:{free_port()}/none"}
    out = ducha("due", "--from", "2026-02-13", "--working-days", "5",
                DUCHA_CALENDAR_DIR=str(tmp_path), **nowhere)
    assert (out.returncode, out.stdout) == (0, "2026-02-27 provisional\n")


@pytest.mark.parametrize(
    "args",
    [
        ["due", "--from", "2026-02-30", "--working-days", "5"],
        ["due", "--from", "26-2-3", "--monthly"],
        ["due", "--from", "2026-02-03", "--working-days", "-1"],
        ["due", "--from", "2026-02-03", "--working-days", "five"],
        ["due", "--from", "2026-02-03"],
        ["due", "--from", "2026-02-03", "--working-days", "5", "--monthly"],
        ["due", "--working-days", "5"],
        ["show", "2026-13"],
        ["show", "2026/02"],
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: list[str]) -> None:
    out = ducha(*args)
    assert out.returncode == 2
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert out.stdout == ""


def test_load_rejects_a_bad_file(tmp_path: Path) -> None:
    bad = tmp_path / "2026.yaml"
    bad.write_text("year: 2026\nsource: x\ndays:\n  - {date: 2026-03-03, workday: true, name: x}\n",
                   encoding="utf-8")
    out = ducha("load", str(bad))
    assert out.returncode == 2 and f"{bad}:4:" in out.stderr
