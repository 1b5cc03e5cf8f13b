import json
import subprocess
import sys

import pytest

from config.settings import SettingsError, load_settings

from .conftest import DEMO_REGISTRY


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


# --- list settings: JSON or comma-separated ---------------------------------------------------

LIST_SETTINGS = [
    # (variable, JSON form, comma form, expected)
    ("DUCHA_CALLBACK_ALLOWLIST", '["127.0.0.1", "10.20.0.0/16"]', "127.0.0.1, 10.20.0.0/16",
     ["127.0.0.1", "10.20.0.0/16"]),
    ("DUCHA_CALLBACK_RETRY_SCHEDULE", "[0, 5, 300]", "0,5,300", [0.0, 5.0, 300.0]),
    ("DUCHA_CODEC_CORS_ORIGINS", '["https://ui.example.gov.cn", "http://127.0.0.1:8080"]',
     "https://ui.example.gov.cn,http://127.0.0.1:8080", ["https://ui.example.gov.cn", "http://127.0.0.1:8080"]),
]


@pytest.mark.parametrize(("var", "as_json", "as_commas", "expected"), LIST_SETTINGS)
def test_list_settings_take_json_or_commas(monkeypatch, var, as_json, as_commas, expected):
    field = var.removeprefix("DUCHA_").lower()
    for value in (as_json, as_commas, expected[0]):
        monkeypatch.setenv(var, value)
        got = getattr(load_settings(), field)
        assert got == (expected if value != expected[0] else expected[:1]), value
    monkeypatch.setenv(var, "")
    assert getattr(load_settings(), field) == []


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("DUCHA_CALLBACK_ALLOWLIST", "[127.0.0.1"),
        ("DUCHA_CALLBACK_ALLOWLIST", '{"a": 1}'),
        ("DUCHA_CALLBACK_RETRY_SCHEDULE", "0,5,soon"),
        ("DUCHA_CALLBACK_RETRY_SCHEDULE", "[0, 5"),
        ("DUCHA_CODEC_CORS_ORIGINS", "ftp://x"),
        ("DUCHA_CODEC_KEYS", "{not json"),
    ],
)
def test_bad_list_value_is_one_line_naming_the_variable(monkeypatch, var, value):
    monkeypatch.setenv(var, value)
    with pytest.raises(SettingsError) as info:
        load_settings()
    message = str(info.value)
    assert var in message and "\n" not in message, message


def test_cli_takes_a_comma_separated_allowlist(db_url, tmp_path):
    """`DUCHA_CALLBACK_ALLOWLIST=127.0.0.1 ducha registry list` works (it printed a 40-line
    settings traceback); a value that is neither JSON nor a list is one line."""
    env = {"PATH": "/usr/bin:/bin", "DUCHA_DATA_DIR": str(tmp_path), "DUCHA_DATABASE_URL": db_url,
           "DUCHA_CALLBACK_ALLOWLIST": "127.0.0.1"}
    load = subprocess.run([sys.executable, "-m", "workers.cli", "registry", "load", str(DEMO_REGISTRY)],
                          env=env, capture_output=True, text=True, timeout=60)
    assert load.returncode == 0, load.stderr
    out = subprocess.run([sys.executable, "-m", "workers.cli", "registry", "list", "--json"],
                         env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert len(json.loads(out.stdout)["agencies"]) == 8
    bad = subprocess.run([sys.executable, "-m", "workers.cli", "registry", "list"],
                         env={**env, "DUCHA_CALLBACK_ALLOWLIST": "[127.0.0.1"},
                         capture_output=True, text=True, timeout=60)
    lines = [line for line in bad.stderr.splitlines() if line.strip()]
    assert bad.returncode != 0 and len(lines) == 1 and "DUCHA_CALLBACK_ALLOWLIST" in lines[0], bad.stderr


def test_every_list_setting_is_covered_above():
    """A list setting added later must accept both forms too (and be listed in LIST_SETTINGS)."""
    import typing

    from config.settings import Settings

    lists = {f"DUCHA_{name.upper()}" for name, field in Settings.model_fields.items()
             if typing.get_origin(field.annotation) is list}
    assert lists == {var for var, *_ in LIST_SETTINGS}
