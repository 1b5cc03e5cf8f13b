"""docker-compose.yml and Dockerfile, checked by reading them (no Docker engine on build machines).

Each rule is a function that returns a list of problems for a parsed compose file; the tests
assert that the real file has none, and the `*_can_fail` tests feed each rule a broken copy to
show that it really checks something.
"""

from __future__ import annotations

import copy
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from config.settings import Settings, load_settings
from workflows.search_attributes import CLI_TYPES

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"

APP_SERVICES = ("migrate", "calendar", "schedules", "worker", "board")
ONE_SHOTS = {
    "ducha-db-init",
    "temporal-admin-tools",
    "temporal-namespace",
    "migrate",
    "calendar",
    "schedules",
}
ESSENTIAL_WORKER_ENV = (
    "DUCHA_TEMPORAL_ADDRESS",
    "DUCHA_NAMESPACE",
    "DUCHA_TASK_QUEUE",
    "DUCHA_DATABASE_URL",
)
SECRET_KEYS = ("POSTGRES_PASSWORD", "POSTGRES_PWD", "SQL_PASSWORD", "PGPASSWORD", "APP_DB_PASSWORD",
               "OWNER_DB_PASSWORD", "DUCHA_LEDGER_CHAIN_KEY")
# Only `migrate` holds the owner's URL; every other app setting is shared (least privilege).
OWNER_ONLY = {"migrate": "DUCHA_DATABASE_OWNER_URL"}
# Who must wait for whom, and how (the start-up order of docs/deployment.md).
EXPECTED_DEPENDENCIES = {
    "ducha-db-init": {"postgresql": "service_healthy"},
    "temporal-admin-tools": {"postgresql": "service_healthy"},
    "temporal": {"temporal-admin-tools": "service_completed_successfully"},
    "temporal-namespace": {"temporal": "service_healthy"},
    "temporal-ui": {"temporal": "service_healthy"},
    "migrate": {"ducha-db-init": "service_completed_successfully"},
    "calendar": {"migrate": "service_completed_successfully"},
    "schedules": {
        "migrate": "service_completed_successfully",
        "temporal-namespace": "service_completed_successfully",
    },
    "worker": {
        "migrate": "service_completed_successfully",
        "temporal-namespace": "service_completed_successfully",
        "temporal": "service_healthy",
    },
    "board": {
        "migrate": "service_completed_successfully",
        "temporal": "service_healthy",
    },
}

_VAR = re.compile(r"\$\{(?P<name>\w+)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


# --- helpers ---------------------------------------------------------------------------------


def load_compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))


def with_defaults(value: object, required: str = "x") -> str:
    """Interpolate like compose with an empty .env: `${V:-d}` → d, `${V:?msg}` / `${V}` → `required`."""

    def sub(m: re.Match) -> str:
        op = m.group("op") or ""
        return m.group("arg") if op.endswith("-") else required

    return _VAR.sub(sub, str(value))


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def depends_on(service: dict) -> dict[str, str | None]:
    """Target → condition (None for the short list form, which means service_started)."""
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return dict.fromkeys(deps)
    return {name: (spec or {}).get("condition") for name, spec in deps.items()}


def is_one_shot(service: dict) -> bool:
    return service.get("restart", "no") in ("no", False)


def image_tag(image: str) -> tuple[str, str]:
    """`repo[:tag][@digest]` with defaults applied → (repository, tag or digest or '')."""
    ref = with_defaults(image)
    if "@" in ref:
        repo, digest = ref.split("@", 1)
        return repo, digest
    repo, sep, tag = ref.rpartition(":")
    if not sep or "/" in tag:  # no tag, or the colon belonged to a registry host:port
        return ref, ""
    return repo, tag


def command_args(value: object) -> list[str]:
    if value is None:
        return []
    return shlex.split(value) if isinstance(value, str) else [str(v) for v in value]


def host_port(address: str) -> tuple[str, str]:
    host, _, port = with_defaults(address).rpartition(":")
    return host, port


def namespace_service(compose: dict) -> tuple[str, dict]:
    for name, svc in compose["services"].items():
        if any("temporal-namespace.sh" in a for a in command_args(svc.get("entrypoint"))):
            return name, svc
    raise AssertionError("no service runs deploy/temporal-namespace.sh")


# --- rules -------------------------------------------------------------------------------------


def dependency_problems(compose: dict) -> list[str]:
    services = compose["services"]
    problems = []
    for name, svc in services.items():
        for target, condition in depends_on(svc).items():
            if target not in services:
                problems.append(f"{name} depends on unknown service {target}")
                continue
            dep = services[target]
            if is_one_shot(dep) and condition != "service_completed_successfully":
                problems.append(
                    f"{name} → one-shot {target} must use service_completed_successfully"
                )
            elif not is_one_shot(dep) and "healthcheck" in dep and condition != "service_healthy":
                problems.append(f"{name} → healthchecked {target} must use service_healthy")
            elif (
                not is_one_shot(dep) and "healthcheck" not in dep and condition == "service_healthy"
            ):
                problems.append(
                    f"{name} waits for {target} to be healthy, but it has no healthcheck"
                )
    return problems


def graph_problems(compose: dict) -> list[str]:
    services = compose["services"]
    problems = []
    one_shots = {name for name, svc in services.items() if is_one_shot(svc)}
    if one_shots != ONE_SHOTS:
        problems.append(f"one-shot services are {sorted(one_shots)}, expected {sorted(ONE_SHOTS)}")
    for name, expected in EXPECTED_DEPENDENCIES.items():
        actual = depends_on(services.get(name, {}))
        if actual != expected:
            problems.append(f"{name} depends on {actual}, expected {expected}")
    return problems


def image_problems(compose: dict) -> list[str]:
    problems = []
    for name, svc in compose["services"].items():
        if "image" not in svc:
            problems.append(f"{name} has no image")
            continue
        repo, tag = image_tag(svc["image"])
        if not tag or tag == "latest" or tag.startswith("latest-"):
            problems.append(f"{name}: image {svc['image']!r} is not pinned")
        elif "build" not in svc and not (
            tag.startswith("sha256:") or re.match(r"\d+(\.\d+)+", tag)
        ):
            problems.append(f"{name}: image {svc['image']!r} is not pinned to a version")
    tags = {
        image_tag(svc["image"])
        for svc in compose["services"].values()
        if "image" in svc
        and image_tag(svc["image"])[0] in ("temporalio/server", "temporalio/admin-tools")
    }
    versions = {tag for _, tag in tags}
    if len(versions) != 1:
        problems.append(
            f"temporalio/server and temporalio/admin-tools versions differ: {sorted(tags)}"
        )
    return problems


def worker_scaling_problems(compose: dict) -> list[str]:
    worker = compose["services"].get("worker", {})
    problems = []
    if "container_name" in worker:
        problems.append("worker has a container_name, so --scale worker=N cannot work")
    if worker.get("ports"):
        problems.append(
            f"worker binds host ports {worker['ports']}, so --scale worker=N cannot work"
        )
    if not is_one_shot(worker) and worker.get("restart") not in (
        "always",
        "unless-stopped",
        "on-failure",
    ):
        problems.append("worker has no restart policy")
    metrics = environment(worker).get("DUCHA_METRICS_PORT")
    if not metrics or str(metrics) not in {str(p) for p in worker.get("expose", [])}:
        problems.append(f"worker does not expose its metrics port {metrics!r}")
    probe = " ".join(command_args(worker.get("healthcheck", {}).get("test")))
    if metrics and f":{metrics}/metrics" not in probe:
        problems.append("worker healthcheck does not probe the metrics port")
    return problems


def app_env_problems(compose: dict) -> list[str]:
    services = compose["services"]
    fields = set(Settings.model_fields)
    problems = []
    envs = {name: environment(services.get(name, {})) for name in APP_SERVICES}
    for name, env in envs.items():
        if "build" not in services.get(name, {}):
            problems.append(f"{name} is not built from the Dockerfile")
        for key in env:
            if key.startswith("DUCHA_") and key.removeprefix("DUCHA_").lower() not in fields:
                problems.append(f"{name}: {key} is not a field of config.settings.Settings")
            elif not key.startswith("DUCHA_"):
                problems.append(f"{name}: {key} is not a DUCHA_ setting")
    shared = {name: {k: v for k, v in env.items() if k != OWNER_ONLY.get(name)} for name, env in envs.items()}
    if len({tuple(sorted(env.items())) for env in shared.values()}) != 1:
        problems.append("the app services do not share one environment")
    for name, env in envs.items():
        owner = env.get("DUCHA_DATABASE_OWNER_URL")
        if name not in OWNER_ONLY and owner:
            problems.append(f"{name} holds the owner's database URL (only migrate may)")
        user = urlsplit(with_defaults(env.get("DUCHA_DATABASE_URL", ""), required="secret")).username
        if owner and urlsplit(with_defaults(owner, required="secret")).username == user:
            problems.append(f"{name}: the service connects as the owner {user!r}")
    worker = envs["worker"]
    problems += [f"worker lacks {key}" for key in ESSENTIAL_WORKER_ENV if not worker.get(key)]
    if worker.get("DUCHA_TASK_QUEUE") != "ducha":
        problems.append("the task queue of the operator contract is `ducha`")
    if worker.get("DUCHA_LOG_FORMAT") != "json":
        problems.append("containers log JSON")
    host, port = host_port(worker.get("DUCHA_TEMPORAL_ADDRESS", ""))
    if host not in services or image_tag(services[host].get("image", ""))[0] != "temporalio/server":
        problems.append(f"DUCHA_TEMPORAL_ADDRESS host {host!r} is not the Temporal server service")
    url = urlsplit(with_defaults(worker.get("DUCHA_DATABASE_URL", ""), required="secret"))
    if (
        url.hostname not in services
        or not image_tag(services[url.hostname]["image"])[0] == "postgres"
    ):
        problems.append(f"DUCHA_DATABASE_URL host {url.hostname!r} is not the PostgreSQL service")
    if url.path != "/ducha":
        problems.append("the application's database is `ducha`")
    return problems


def secret_problems(compose: dict) -> list[str]:
    problems = []
    for name, svc in compose["services"].items():
        for key, value in environment(svc).items():
            if key in SECRET_KEYS and not re.fullmatch(r"\$\{\w+:\?[^}]*\}", value):
                problems.append(
                    f"{name}: {key} must come from .env as ${{VAR:?...}}, not {value!r}"
                )
            if key in ("DUCHA_DATABASE_URL", "DUCHA_DATABASE_OWNER_URL"):
                password = urlsplit(with_defaults(value, required="<from-env>")).password
                if password != "<from-env>" or "${" not in value:
                    problems.append(f"{name}: the database password in {key} must come from .env")
    return problems


def search_attribute_problems(compose: dict) -> list[str]:
    name, svc = namespace_service(compose)
    registered = {}
    for arg in command_args(svc.get("command")):
        attr, sep, kind = arg.partition("=")
        registered[attr] = kind if sep else None
    problems = []
    if registered != CLI_TYPES:
        problems.append(f"{name} registers {registered}, CLI_TYPES is {CLI_TYPES}")
    app_ns = environment(compose["services"]["worker"]).get("DUCHA_NAMESPACE")
    if environment(svc).get("NAMESPACE") != app_ns:
        problems.append(
            f"{name} prepares namespace {environment(svc).get('NAMESPACE')!r}, the app uses {app_ns!r}"
        )
    host, port = host_port(environment(svc).get("TEMPORAL_ADDRESS", ""))
    if (host, port) != host_port(
        environment(compose["services"]["worker"]).get("DUCHA_TEMPORAL_ADDRESS", "")
    ):
        problems.append(f"{name} talks to {host}:{port}, not the app's Temporal address")
    if image_tag(svc.get("image", ""))[0] != "temporalio/admin-tools":
        problems.append(f"{name} does not use temporalio/admin-tools")
    return problems


def ui_problems(compose: dict) -> list[str]:
    services = compose["services"]
    ui = services.get("temporal-ui", {})
    problems = []
    if image_tag(ui.get("image", ""))[0] != "temporalio/ui":
        problems.append("temporal-ui does not use temporalio/ui")
    host, port = host_port(environment(ui).get("TEMPORAL_ADDRESS", ""))
    if host not in services or image_tag(services[host].get("image", ""))[0] != "temporalio/server":
        problems.append(f"temporal-ui TEMPORAL_ADDRESS host {host!r} is not the Temporal server")
    if port != "7233":
        problems.append(f"temporal-ui TEMPORAL_ADDRESS port is {port!r}, not the frontend's 7233")
    if "TEMPORAL_CODEC_ENDPOINT" not in environment(ui):
        problems.append("temporal-ui has no (optional) TEMPORAL_CODEC_ENDPOINT")
    if not any(with_defaults(p).endswith(":8080") for p in ui.get("ports", [])):
        problems.append("temporal-ui does not publish container port 8080")
    return problems


def mount_problems(compose: dict) -> list[str]:
    problems = []
    for name, svc in compose["services"].items():
        for volume in svc.get("volumes", []):
            source = (
                volume.split(":", 1)[0] if isinstance(volume, str) else volume.get("source", "")
            )
            if source.startswith((".", "/")) and not (ROOT / source).exists():
                problems.append(f"{name} mounts {source}, which is not in the repository")
            elif not source.startswith((".", "/")) and source not in (compose.get("volumes") or {}):
                problems.append(f"{name} uses undeclared volume {source}")
    return problems


def board_problems(compose: dict) -> list[str]:
    """督办看板: `ducha board` from the app image, listening on all container interfaces on the
    port its healthcheck probes, published on loopback unless configured, restarted."""
    board = compose["services"].get("board")
    if board is None:
        return ["no board service"]
    problems = []
    args = command_args(board.get("command"))
    if not args or args[0] != "board":
        problems.append(f"board runs {args}, not `ducha board`")
    host = args[args.index("--host") + 1] if "--host" in args else Settings().board_host
    port = args[args.index("--port") + 1] if "--port" in args else str(Settings().board_port)
    if host != "0.0.0.0":
        problems.append(f"board listens on {host!r} inside its container: unreachable through a port")
    probe = " ".join(command_args(board.get("healthcheck", {}).get("test")))
    if f"127.0.0.1:{port}/healthz" not in probe:
        problems.append(f"board healthcheck does not probe /healthz on port {port}")
    published = [with_defaults(p) for p in board.get("ports", [])]
    if not published or not all(p.endswith(f":{port}") for p in published):
        problems.append(f"board does not publish its port {port}: {published}")
    if any(not p.startswith("127.0.0.1:") for p in published):
        problems.append(f"board is published beyond loopback by default: {published}")
    if board.get("restart") not in ("always", "unless-stopped", "on-failure"):
        problems.append("board has no restart policy")
    ui_url = environment(board).get("DUCHA_BOARD_UI_URL", "")
    ui_ports = [with_defaults(p).rsplit(":", 2) for p in compose["services"].get("temporal-ui", {}).get("ports", [])]
    if not ui_url or not any(with_defaults(ui_url).endswith(f":{p[1]}") for p in ui_ports if len(p) == 3):
        problems.append(f"board links to {ui_url!r}, not the Web UI's published port")
    return problems


RULES = {
    "dependencies": dependency_problems,
    "graph": graph_problems,
    "images": image_problems,
    "worker": worker_scaling_problems,
    "app_env": app_env_problems,
    "secrets": secret_problems,
    "search_attributes": search_attribute_problems,
    "ui": ui_problems,
    "mounts": mount_problems,
    "board": board_problems,
}


# --- the real file -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict:
    return load_compose()


@pytest.mark.parametrize("rule", RULES)
def test_compose_rule_holds(compose: dict, rule: str) -> None:
    assert RULES[rule](compose) == []


def test_every_depends_on_target_exists(compose: dict) -> None:
    services = compose["services"]
    for name, svc in services.items():
        assert set(depends_on(svc)) <= set(services), name


def test_app_environment_is_valid_settings(compose: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    """The values themselves pass config.settings validation (host:port, URL, zone, literals)."""
    for name in APP_SERVICES:
        for key, value in environment(compose["services"][name]).items():
            monkeypatch.setenv(key, with_defaults(value, required="secret"))
        s = load_settings()
        assert (s.task_queue, s.log_format, s.embedded_postgres) == ("ducha", "json", False), name
        assert s.metrics_port > 0, name


def test_search_attributes_match_cli_types_exactly(compose: dict) -> None:
    _, svc = namespace_service(compose)
    pairs = [arg.split("=", 1) for arg in command_args(svc.get("command"))]
    assert [name for name, _ in pairs] == list(CLI_TYPES)  # no duplicates, no extras
    assert dict(pairs) == CLI_TYPES
    script = (ROOT / "deploy" / "temporal-namespace.sh").read_text(encoding="utf-8")
    assert "temporal operator search-attribute create" in script
    assert '--name "$name" --type "$type"' in script


def test_schema_step_sets_up_both_databases(compose: dict) -> None:
    svc = compose["services"]["temporal-admin-tools"]
    script = (ROOT / "deploy" / "temporal-schema.sh").read_text(encoding="utf-8")
    env = environment(svc)
    assert (env["TEMPORAL_DB"], env["TEMPORAL_VISIBILITY_DB"]) == (
        "temporal",
        "temporal_visibility",
    )
    for step in ("create", "setup-schema -v 0.0", "update-schema -d"):
        assert step in script
    assert "--plugin postgres12" in script
    temporal = environment(compose["services"]["temporal"])
    assert temporal["DB"] == "postgres12"
    assert (temporal["DBNAME"], temporal["VISIBILITY_DBNAME"]) == (
        "temporal",
        "temporal_visibility",
    )


def test_calendar_step_loads_the_shipped_calendars(compose: dict) -> None:
    svc = compose["services"]["calendar"]
    assert "ducha calendar load" in " ".join(command_args(svc.get("entrypoint")))
    assert "data/calendar/*.yaml" in " ".join(command_args(svc.get("entrypoint")))
    assert list((ROOT / "data" / "calendar").glob("*.yaml"))


def test_every_compose_variable_is_documented_in_env_example() -> None:
    used = set(re.findall(r"\$\{(\w+)", COMPOSE_FILE.read_text(encoding="utf-8")))
    example = (ROOT / "deploy" / "env.example").read_text(encoding="utf-8")
    documented = set(re.findall(r"^#?\s*(\w+)=", example, flags=re.MULTILINE))
    assert used - documented == set()
    # the secrets are left for the operator to fill in, never given a value in the example
    assert re.search(r"^POSTGRES_PASSWORD=$", example, re.MULTILINE)
    assert re.search(r"^APP_DB_PASSWORD=$", example, re.MULTILINE)
    assert re.search(r"^OWNER_DB_PASSWORD=$", example, re.MULTILINE)
    assert re.search(r"^DUCHA_LEDGER_CHAIN_KEY=$", example, re.MULTILINE)


@pytest.mark.skipif(shutil.which("sh") is None, reason="no POSIX shell")
@pytest.mark.parametrize("script", sorted(p.name for p in (ROOT / "deploy").glob("*.sh")))
def test_deploy_scripts_parse(script: str) -> None:
    result = subprocess.run(
        ["sh", "-n", str(ROOT / "deploy" / script)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


# --- Dockerfile --------------------------------------------------------------------------------


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    logical = re.sub(r"\\\n", " ", text)
    out = []
    for line in logical.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def dockerfile_problems(text: str) -> list[str]:
    instructions = dockerfile_instructions(text)
    problems = []
    args = dict(rest.split("=", 1) for word, rest in instructions if word == "ARG" and "=" in rest)
    base = [
        _VAR.sub(lambda m: args.get(m.group("name"), ""), rest)
        for word, rest in instructions
        if word == "FROM"
    ]
    if not base or not base[-1].startswith("python:3.11") or "slim" not in base[-1]:
        problems.append(f"base image is {base}, expected python:3.11-slim")
    runs = " ".join(rest for word, rest in instructions if word == "RUN")
    install = re.search(r"pip install (?:-\S+ )*-c requirements\.lock (?:-\S+ )*\.(?:\s|$)", runs)
    if not install:
        problems.append("the project is not installed with `pip install -c requirements.lock .`")
    if "[test]" in runs or "requirements.lock ." not in runs:
        problems.append("the image must not install the test extras")
    users = [rest for word, rest in instructions if word == "USER"]
    if not users or users[-1].split(":")[0] in ("root", "0"):
        problems.append("the image does not run as a non-root user")
    entrypoint = [rest for word, rest in instructions if word == "ENTRYPOINT"]
    if not entrypoint or yaml.safe_load(entrypoint[-1]) != ["ducha"]:
        problems.append(f'entrypoint is {entrypoint}, expected ["ducha"]')
    cmd = [rest for word, rest in instructions if word == "CMD"]
    if not cmd or yaml.safe_load(cmd[-1]) != ["worker"]:
        problems.append(f'default command is {cmd}, expected ["worker"]')
    return problems


def test_dockerfile(compose: dict) -> None:
    assert DOCKERFILE.exists()
    assert dockerfile_problems(DOCKERFILE.read_text(encoding="utf-8")) == []
    for name in APP_SERVICES:
        build = compose["services"][name]["build"]
        build = {"context": build} if isinstance(build, str) else build
        assert (
            ROOT / build.get("context", ".") / build.get("dockerfile", "Dockerfile")
        ) == DOCKERFILE


def test_dockerignore_keeps_secrets_and_venv_out() -> None:
    lines = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*"  # allow-list
    assert not any(
        line.startswith("!") and (".env" in line or ".venv" in line or ".data" in line)
        for line in lines
    )


# --- each rule can fail ------------------------------------------------------------------------


def _break(path: str, value: object = None, delete: bool = False):
    def mutate(c: dict) -> None:
        *parents, last = path.split("/")
        node = c
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        key = int(last) if isinstance(node, list) else last
        if delete:
            del node[key]
        else:
            node[key] = value

    return mutate


BROKEN = [
    (
        "dependencies",
        _break("services/worker/depends_on/nowhere", {"condition": "service_started"}),
        "unknown service nowhere",
    ),
    (
        "dependencies",
        _break("services/temporal/depends_on/temporal-admin-tools/condition", "service_started"),
        "one-shot temporal-admin-tools must use service_completed_successfully",
    ),
    (
        "dependencies",
        _break("services/temporal-ui/depends_on/temporal/condition", "service_started"),
        "healthchecked temporal must use service_healthy",
    ),
    ("graph", _break("services/schedules/depends_on/migrate", delete=True), "schedules depends on"),
    ("graph", _break("services/migrate/restart", "unless-stopped"), "one-shot services are"),
    (
        "images",
        _break("services/postgresql/image", "postgres:latest"),
        "'postgres:latest' is not pinned",
    ),
    (
        "images",
        _break("services/temporal-ui/image", "temporalio/ui"),
        "'temporalio/ui' is not pinned",
    ),
    (
        "images",
        _break("services/temporal/image", "temporalio/server:${TEMPORAL_VERSION}"),
        "is not pinned to a version",
    ),
    ("images", _break("services/temporal/image", "temporalio/server:1.30.0"), "versions differ"),
    (
        "images",
        _break("services/worker/image", "fazhi-ducha:latest"),
        "'fazhi-ducha:latest' is not pinned",
    ),
    ("worker", _break("services/worker/container_name", "ducha-worker"), "container_name"),
    ("worker", _break("services/worker/ports", ["9464:9464"]), "binds host ports"),
    ("worker", _break("services/worker/expose", []), "does not expose its metrics port"),
    (
        "app_env",
        _break("services/worker/environment/DUCHA_NOT_A_SETTING", "1"),
        "DUCHA_NOT_A_SETTING is not a field",
    ),
    (
        "app_env",
        _break("services/worker/environment/DUCHA_DATABASE_OWNER_URL",
               "postgresql://ducha:${OWNER_DB_PASSWORD:?x}@postgresql:5432/ducha"),
        "holds the owner's database URL",
    ),
    (
        "app_env",
        _break("services/worker/environment/DUCHA_TASK_QUEUE", delete=True),
        "worker lacks DUCHA_TASK_QUEUE",
    ),
    (
        "app_env",
        _break("services/worker/environment/DUCHA_TEMPORAL_ADDRESS", "elsewhere:7233"),
        "is not the Temporal server service",
    ),
    (
        "app_env",
        _break("services/migrate/environment/DUCHA_LOG_LEVEL", "debug"),
        "do not share one environment",
    ),
    (
        "secrets",
        _break("services/postgresql/environment/POSTGRES_PASSWORD", "temporal"),
        "POSTGRES_PASSWORD must come from .env",
    ),
    (
        "secrets",
        _break(
            "services/worker/environment/DUCHA_DATABASE_URL",
            "postgresql://ducha:pw@postgresql:5432/ducha",
        ),
        "database password in DUCHA_DATABASE_URL",
    ),
    (
        "search_attributes",
        _break("services/temporal-namespace/command", ["DuchaKind=Keyword"]),
        "registers {'DuchaKind': 'Keyword'}",
    ),
    (
        "search_attributes",
        _break("services/temporal-namespace/command/7", "DuchaYear=Keyword"),
        "'DuchaYear': 'Keyword'",
    ),
    (
        "search_attributes",
        _break("services/temporal-namespace/environment/NAMESPACE", "other"),
        "prepares namespace 'other'",
    ),
    (
        "ui",
        _break("services/temporal-ui/environment/TEMPORAL_ADDRESS", "127.0.0.1:7233"),
        "host '127.0.0.1' is not the Temporal server",
    ),
    (
        "ui",
        _break("services/temporal-ui/ports", ["8081:8081"]),
        "does not publish container port 8080",
    ),
    (
        "mounts",
        _break("services/temporal/volumes", ["./deploy/missing:/etc/x:ro"]),
        "mounts ./deploy/missing",
    ),
    ("board", _break("services/board", delete=True), "no board service"),
    ("board", _break("services/board/command", ["worker"]), "not `ducha board`"),
    ("board", _break("services/board/command", ["board"]), "unreachable through a port"),
    ("board", _break("services/board/ports", ["8791:8791"]), "beyond loopback"),
    ("board", _break("services/board/healthcheck", {"test": ["CMD", "true"]}), "does not probe /healthz"),
    ("board", _break("services/board/environment/DUCHA_BOARD_UI_URL", "http://127.0.0.1:8233"),
     "not the Web UI's published port"),
    ("graph", _break("services/board/depends_on/temporal", delete=True), "board depends on"),
]


@pytest.mark.parametrize(
    ("rule", "mutate", "expected"), BROKEN, ids=[f"{r}-{i}" for i, (r, *_) in enumerate(BROKEN)]
)
def test_rule_can_fail(compose: dict, rule: str, mutate, expected: str) -> None:
    broken = copy.deepcopy(compose)
    for svc in broken["services"].values():  # anchors are shared objects: unshare before editing
        if "environment" in svc:
            svc["environment"] = dict(environment(svc))
    mutate(broken)
    problems = RULES[rule](broken)
    assert any(expected in problem for problem in problems), problems


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("FROM ${PYTHON_IMAGE}", "FROM python:3.12"),
        ("pip install -c requirements.lock .", "pip install ."),
        ("pip install -c requirements.lock .", "pip install -c requirements.lock '.[test]'"),
        ("USER ducha", "USER root"),
        ('ENTRYPOINT ["ducha"]', 'ENTRYPOINT ["python"]'),
        ('CMD ["worker"]', 'CMD ["up"]'),
    ],
)
def test_dockerfile_rule_can_fail(old: str, new: str) -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert old in text
    assert dockerfile_problems(text.replace(old, new)) != []
