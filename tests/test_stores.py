"""The store clients: one module builds them; errors name the endpoint; real servers on loopback."""

from __future__ import annotations

import ast
import socket
from contextlib import closing
from pathlib import Path

import pytest

from labkit import stores
from labkit.errors import ConnectError
from labkit.params import Lab
from labkit.secrets import Secret
from labkit.stores import Endpoint

PACKAGE = Path(__file__).resolve().parent.parent / "labkit"
STAND_IN = PACKAGE / "sandbox" / "shortener"  # the stand-in Shlink keeps its own pool, as Shlink

REDIS_MAKERS = {"Redis", "StrictRedis", "Sentinel", "ConnectionPool", "from_url"}


def _head(node: ast.expr) -> tuple[str, str]:
    """(the name a call starts from, the name it calls): ``redis.Redis`` -> ("redis", "Redis")."""
    if isinstance(node, ast.Attribute):
        inner = node.value
        while isinstance(inner, ast.Attribute):
            inner = inner.value
        return (inner.id if isinstance(inner, ast.Name) else ""), node.attr
    if isinstance(node, ast.Name):
        return node.id, node.id
    return "", ""


def _origins(tree: ast.Module) -> dict[str, str]:
    """Local name -> what it is: the module it was imported from, or a local class's bases."""
    names: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                names[alias.asname or alias.name] = node.module
        elif isinstance(node, ast.Import):
            for alias in node.names:
                names[alias.asname or alias.name.split(".")[0]] = alias.name
        elif isinstance(node, ast.ClassDef):  # a subclass of a client is a client
            names[node.name] = " ".join(ast.unparse(base) for base in node.bases)
    return names


def builders(root: Path = PACKAGE) -> dict[str, set[str]]:
    """Per store, the modules (paths from the package's parent) that construct its clients."""
    found: dict[str, set[str]] = {"redis": set(), "postgres": set()}
    for path in sorted(root.rglob("*.py")):
        if STAND_IN in path.parents:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        origins = _origins(tree)
        where = str(path.relative_to(root.parent))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            start, name = _head(node.func)
            origin = origins.get(start, start)
            subclass = start == name and origin != start and "redis" in origin
            if subclass or (name in REDIS_MAKERS and origin.startswith("redis")):
                found["redis"].add(where)
            if name == "connect" and "psycopg" in origin:
                found["postgres"].add(where)
    return found


def test_one_module_builds_redis_clients_and_one_builds_postgres_connections() -> None:
    found = builders()
    assert found == {"redis": {"labkit/stores.py"}, "postgres": {"labkit/stores.py"}}


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (
            "import redis\nc = redis.Redis(host='x')\n",
            {"redis": {"labkit/m.py"}, "postgres": set()},
        ),
        (
            "from redis.sentinel import Sentinel\ns = Sentinel([('h', 1)])\n",
            {"redis": {"labkit/m.py"}, "postgres": set()},
        ),
        (
            "import psycopg\nc = psycopg.connect('')\n",
            {"redis": set(), "postgres": {"labkit/m.py"}},
        ),
        (
            "from psycopg import connect\nc = connect('')\n",
            {"redis": set(), "postgres": {"labkit/m.py"}},
        ),
        (
            "import socket\ns = socket.create_connection(('h', 1))\n",
            {"redis": set(), "postgres": set()},
        ),
    ],
)
def test_the_scan_sees_each_way_of_building_a_client(
    tmp_path: Path, source: str, expected: dict[str, set[str]]
) -> None:
    root = tmp_path / "labkit"
    root.mkdir()
    (root / "m.py").write_text(source, encoding="utf-8")
    assert builders(root) == expected


def _closed_port() -> int:
    with closing(socket.socket()) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])  # nothing listens once the socket closes


def test_redis_that_is_not_there_is_a_connect_error_naming_the_endpoint() -> None:
    endpoint = Endpoint("127.0.0.1", _closed_port())
    client = stores.redis_client(endpoint, Secret("hunter2-hunter2"), timeout_s=0.5)
    with closing(client), pytest.raises(ConnectError) as caught:
        client.ping()
    message = str(caught.value)
    assert f"redis 127.0.0.1:{endpoint.port}: PING failed" in message
    assert "hunter2" not in message


def test_postgres_that_is_not_there_is_a_connect_error_naming_the_endpoint() -> None:
    endpoint = Endpoint("127.0.0.1", _closed_port())
    with pytest.raises(ConnectError) as caught:
        stores.postgres(endpoint, "shlink", Secret("hunter2-hunter2"), "shlink", timeout_s=1)
    assert f"postgres shlink@127.0.0.1:{endpoint.port}/shlink: cannot connect" in str(caught.value)


def test_sentinels_that_do_not_answer_are_named() -> None:
    sentinels = [Endpoint("127.0.0.1", _closed_port()), Endpoint("127.0.0.1", _closed_port())]
    views = stores.sentinel_views(sentinels, "mymaster", timeout_s=0.5)
    assert list(views) == sentinels and all(isinstance(v, ConnectError) for v in views.values())
    with pytest.raises(ConnectError) as caught:
        stores.sentinel_master(sentinels, "mymaster", timeout_s=0.5)
    assert all(str(where) in str(caught.value) for where in sentinels)
    assert "name no master" in str(caught.value)


def test_endpoint_names_ipv6_in_brackets() -> None:
    assert (str(Endpoint("::1", 6379)), str(Endpoint("db", 5432))) == ("[::1]:6379", "db:5432")


@pytest.mark.usefixtures("sandbox")
def test_through_the_sentinels_to_the_master_and_postgres_as_the_lab_user(
    sandbox_lab: Lab,
) -> None:
    named = stores.sentinel_master(stores.lab_sentinels(sandbox_lab), sandbox_lab.redis.master_name)
    with closing(stores.lab_redis_master(sandbox_lab)) as client:
        assert client.info("replication")["role"] == "master"
        assert client.endpoint == named
    asked: list[Endpoint] = []  # a layer that reaches the master another way is asked first
    reach = lambda master: asked.append(master) or master  # noqa: E731
    sentinels = stores.lab_sentinels(sandbox_lab)[:1]
    with closing(stores.lab_redis_master(sandbox_lab, sentinels=sentinels, reach=reach)) as c:
        assert c.ping() is True and asked == [named]
    with closing(stores.lab_postgres(sandbox_lab)) as connection:
        row = connection.execute("SELECT current_user").fetchone()
        assert row == (sandbox_lab.postgres.user,)
        with pytest.raises(ConnectError) as caught:
            connection.execute("SELECT * FROM no_such_table_here")
        assert f"postgres {sandbox_lab.postgres.host}:{sandbox_lab.postgres.port}: SELECT" in str(
            caught.value
        )
