import subprocess
import sys

import pytest

from config.settings import SettingsError, load_settings


def test_defaults_are_the_embedded_stack(monkeypatch):
    for var in ("DUCHA_DATABASE_URL", "DUCHA_TEMPORAL_ADDRESS", "DUCHA_TASK_QUEUE"):
        monkeypatch.delenv(var, raising=False)
    s = load_settings()
    assert s.embedded_postgres
    assert s.task_queue == "ducha"
    assert s.namespace == "default"
    assert s.temporal_address == "127.0.0.1:7233"
    assert s.timezone == "Asia/Shanghai"
    assert s.postgres_url.startswith("postgresql://ducha_app@127.0.0.1:")  # the least-privilege role
    assert s.owner_url.startswith("postgresql://postgres@127.0.0.1:")  # migrations


def test_env_overrides(monkeypatch):
    monkeypatch.setenv("DUCHA_NAMESPACE", "county")
    monkeypatch.setenv("DUCHA_LOG_FORMAT", "json")
    monkeypatch.setenv("DUCHA_DATABASE_URL", "postgresql://u@db:5432/ducha")
    s = load_settings()
    assert (s.namespace, s.log_format, s.embedded_postgres) == ("county", "json", False)


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("DUCHA_TIMEZONE", "Mars/Olympus"),
        ("DUCHA_UI_PORT", "70000"),
        ("DUCHA_LOG_FORMAT", "xml"),
        ("DUCHA_DATABASE_URL", "mysql://x"),
        ("DUCHA_TEMPORAL_ADDRESS", "nohostport"),
    ],
)
def test_bad_value_names_the_variable(monkeypatch, var, value):
    monkeypatch.setenv(var, value)
    with pytest.raises(SettingsError) as info:
        load_settings()
    message = str(info.value)
    assert var in message
    assert "\n" not in message


def test_cli_reports_bad_config_in_one_line():
    env = {"DUCHA_UI_PORT": "not-a-port", "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-m", "workers.cli", "registry", "list"],
        env=env, capture_output=True, text=True, timeout=60,
    )
    assert out.returncode != 0
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert lines == [lines[0]] and "DUCHA_UI_PORT" in lines[0], out.stderr
