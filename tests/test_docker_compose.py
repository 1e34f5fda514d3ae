"""docker-compose.yml (production) runs what scripts/with-cluster runs in the tests:
the same commands (the Procfile's), the same node variables. Docker cannot run here, so
the file is parsed and compared with what the cluster script would start."""

import importlib.machinery
import importlib.util
import shlex
from pathlib import Path

import yaml

from tests.helpers import REPO

COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
WEB_NODES = [name for name in SERVICES if name.startswith("web-")]


def cluster_nodes():
    loader = importlib.machinery.SourceFileLoader("cluster_nodes", str(REPO / "scripts" / "cluster-nodes"))
    spec = importlib.util.spec_from_loader("cluster_nodes", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def procfile() -> dict[str, list[str]]:
    lines = (REPO / "Procfile").read_text().splitlines()
    return {name: shlex.split(command) for name, _, command in
            (line.partition(":") for line in lines if line.strip() and not line.startswith("#"))}


def test_it_has_two_web_nodes_behind_a_proxy_a_worker_and_the_three_servers():
    assert len(WEB_NODES) == 2
    assert {"proxy", "worker", "postgres", "redis", "s3"} <= set(SERVICES)
    proxy_config = (REPO / "deploy" / "nginx.conf").read_text()
    assert all(f"server {name}:8000" in proxy_config for name in WEB_NODES)


def test_the_nodes_run_the_procfiles_commands():
    commands = procfile()

    assert all(SERVICES[name]["command"] == commands["web"] for name in WEB_NODES)
    assert SERVICES["worker"]["command"] == commands["worker"]


def test_with_cluster_starts_the_commands_of_the_compose_services():
    script = cluster_nodes()

    for service in (*WEB_NODES, "worker"):
        argv = script.node_argv(service)
        assert [Path(argv[0]).name, *argv[1:]] == SERVICES[service]["command"]
    assert set(script.NODES.values()) == {*WEB_NODES, "worker"}


def test_with_cluster_gives_the_nodes_every_variable_compose_gives_them_and_no_other(tmp_path, monkeypatch):
    script = cluster_nodes()
    for name in script.FROM_WRAPPERS:
        monkeypatch.setenv(name, f"value-of-{name}")

    values = script.loopback_values(tmp_path, "a-secret", ["http://127.0.0.1:1"])

    assert set(values) == set(COMPOSE["x-node-environment"])
    assert all(SERVICES[name]["environment"].keys() >= COMPOSE["x-node-environment"].keys()
               for name in (*WEB_NODES, "worker", "setup"))


def test_a_node_variable_the_cluster_script_cannot_fill_stops_it_with_a_message(tmp_path, monkeypatch):
    script = cluster_nodes()
    for name in script.FROM_WRAPPERS:
        monkeypatch.setenv(name, "x")
    changed = {**COMPOSE, "x-node-environment": {**COMPOSE["x-node-environment"], "NEW_SETTING": "1"}}
    monkeypatch.setattr(script, "compose", lambda: changed)

    try:
        script.node_environment(tmp_path, "s", [], tmp_path)
    except script.ClusterError as exc:
        assert "NEW_SETTING" in str(exc) and "loopback_values" in str(exc)
    else:
        raise AssertionError("an unknown node variable was let through")


def test_every_secret_comes_from_the_env_file_and_none_is_written_in_the_compose_file():
    environment = COMPOSE["x-node-environment"]
    for name in ("SECRET_KEY", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert environment[name].startswith(f"${{{name}:?"), environment[name]
    assert "${POSTGRES_PASSWORD:?" in environment["DATABASE_URL"]
    example = (REPO / "deploy" / "example.env").read_text()
    assert all(f"{name}=" in example for name in ("SECRET_KEY", "POSTGRES_PASSWORD", "AWS_ACCESS_KEY_ID",
                                                  "AWS_SECRET_ACCESS_KEY", "SITE_HOST"))
