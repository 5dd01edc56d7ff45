"""docker-compose.yml and the Dockerfile wire the services to each other correctly.

No Docker engine here: the file is parsed and checked for the mistakes that only
show up after a long `docker compose up` (a wrong host name, a port nobody
listens on, Kafka advertising an address other containers cannot reach).
"""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from base.settings import REPO_ROOT

COMPOSE = REPO_ROOT / "docker-compose.yml"
LABSTREAM_SERVICES = ("migrate", "connector", "worker", "api", "registry", "simulator")
STACK = REPO_ROOT / "stack"
# where the native stack listens and keeps files: the containers differ on purpose
PG_HOST_ONLY = {"listen_addresses", "port", "unix_socket_directories"}
KAFKA_HOST_ONLY = {"node.id", "controller.quorum.voters", "controller.listener.names",
                   "listeners", "advertised.listeners", "listener.security.protocol.map",
                   "inter.broker.listener.name", "log.dirs", "process.roles"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(loaded, dict)
    return loaded


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):  # ["KEY=value", ...] form
        env = dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


def container_ports(service: dict[str, Any]) -> set[int]:
    """Ports the service listens on inside the network: `expose` plus the container
    side of `ports` mappings ("127.0.0.1:55432:5432" -> 5432)."""
    ports = {int(port) for port in service.get("expose", [])}
    for mapping in service.get("ports", []):
        ports.add(int(str(mapping).split(":")[-1].split("/")[0]))
    return ports


def command_settings(service: dict[str, Any]) -> dict[str, str]:
    """`postgres -c key=value ...` as a dict."""
    command = service["command"]
    words = command.split() if isinstance(command, str) else [str(w) for w in command]
    return dict(words[i + 1].split("=", 1) for i, word in enumerate(words) if word == "-c")


def listeners(value: str) -> dict[str, tuple[str, int]]:
    """ "NAME://host:port,..." -> {NAME: (host, port)}; empty host = all interfaces."""
    parsed = {}
    for item in value.split(","):
        name, _, address = item.strip().partition("://")
        host, _, port = address.rpartition(":")
        parsed[name] = (host, int(port))
    return parsed


def test_every_expected_service_is_defined(services: dict[str, dict[str, Any]]) -> None:
    expected = {"postgres", "kafka", "jaeger", *LABSTREAM_SERVICES}
    assert expected <= set(services)
    assert services["simulator"].get("profiles") == ["simulator"]  # optional


def native_settings(path: Path, separator: str) -> dict[str, str]:
    """`key = value` (or `key=value`) lines of a native stack file, quotes removed."""
    settings = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].rstrip() if not line.lstrip().startswith("log_line") \
            else line
        if separator in line and line.strip():
            key, _, value = line.partition(separator)
            settings[key.strip()] = value.strip().strip("'")
    return settings


def test_images_are_pinned_to_exact_versions(services: dict[str, dict[str, Any]]) -> None:
    for name in ("postgres", "kafka", "jaeger"):
        image = services[name]["image"]
        tag = image.rpartition(":")[2]
        assert ":" in image and tag != "latest", image
        assert re.fullmatch(r"\d+\.\d+(\.\d+)?(-[a-z]+)?", tag), f"{image}: not an exact version"


def test_kafka_is_the_native_stacks_version_and_settings(
    services: dict[str, dict[str, Any]],
) -> None:
    pom = (STACK / "kafka" / "pom.xml").read_text()
    version = re.search(r"<kafka.version>([^<]+)</kafka.version>", pom)
    assert version is not None
    assert services["kafka"]["image"] == f"apache/kafka:{version[1]}"
    env = environment(services["kafka"])
    native = native_settings(STACK / "kafka" / "server.properties", "=")
    for key, value in native.items():
        if key in KAFKA_HOST_ONLY:
            continue
        name = "KAFKA_" + key.upper().replace(".", "_")
        assert env.get(name, "").lower() == value.lower(), f"{name}: compose {env.get(name)}, " \
            f"native {key}={value}"


def test_postgres_has_every_native_setting(services: dict[str, dict[str, Any]]) -> None:
    native = native_settings(STACK / "postgresql" / "labstream.conf", " = ")
    assert "max_slot_wal_keep_size" in native  # the limit the issue found missing
    compose = command_settings(services["postgres"])
    for key, value in native.items():
        if key not in PG_HOST_ONLY:
            assert compose.get(key) == value, f"{key}: {compose.get(key)!r}, native {value!r}"
    assert set(compose) <= set(native), "a compose-only PostgreSQL setting: add it natively too"
    version = services["postgres"]["image"].partition(":")[2].split(".")[0]
    assert version == "15"  # the native stack's major version (stack/README.md)


def test_postgres_can_do_logical_replication(services: dict[str, dict[str, Any]]) -> None:
    postgres = services["postgres"]
    assert re.fullmatch(r"postgres:15(\.\d+)?(-\w+)?", postgres["image"])
    settings = command_settings(postgres)
    assert settings["wal_level"] == "logical"
    assert int(settings["max_replication_slots"]) >= 10
    assert int(settings["max_wal_senders"]) >= 10
    env = environment(postgres)
    assert (env["POSTGRES_USER"], env["POSTGRES_PASSWORD"], env["POSTGRES_DB"]) == (
        "lab",
        "lab",
        "lab",
    )


def test_kafka_runs_kraft_combined_with_consistent_listeners(
    services: dict[str, dict[str, Any]],
) -> None:
    kafka = services["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    env = environment(kafka)
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert "KAFKA_ZOOKEEPER_CONNECT" not in env
    cluster_id = env["CLUSTER_ID"]
    assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16  # a UUID, as kafka-storage wants

    node_id = env["KAFKA_NODE_ID"]
    voters = env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(",")
    assert len(voters) == 1
    voter_id, _, voter_address = voters[0].partition("@")
    voter_host, _, voter_port = voter_address.rpartition(":")
    assert voter_id == node_id and voter_host == "kafka"

    declared = listeners(env["KAFKA_LISTENERS"])
    advertised = listeners(env["KAFKA_ADVERTISED_LISTENERS"])
    protocols = dict(
        item.split(":") for item in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(",")
    )
    controller = env["KAFKA_CONTROLLER_LISTENER_NAMES"]
    assert set(declared) == set(protocols)
    assert declared[controller][1] == int(voter_port)
    assert controller not in advertised  # a controller listener is never advertised to clients
    for name, (_, port) in advertised.items():
        assert name in declared and declared[name][1] == port, name
    assert env["KAFKA_INTER_BROKER_LISTENER_NAME"] in advertised
    assert advertised[env["KAFKA_INTER_BROKER_LISTENER_NAME"]][0] == "kafka"
    # what the host reaches is published on the same port
    published = {str(p).split(":")[-2]: int(str(p).split(":")[-1]) for p in kafka.get("ports", [])}
    for host, port in advertised.values():
        if host in ("127.0.0.1", "localhost"):
            assert published.get(str(port)) == port
    assert int(env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"]) == 1  # one broker


def test_labstream_services_point_at_real_services_and_ports(
    services: dict[str, dict[str, Any]],
) -> None:
    kafka_advertised = listeners(environment(services["kafka"])["KAFKA_ADVERTISED_LISTENERS"])
    postgres_env = environment(services["postgres"])
    for name in LABSTREAM_SERVICES:
        env = environment(services[name])
        db = urlsplit(env["LABSTREAM_DATABASE_URL"])
        assert db.hostname in services, (name, db.hostname)
        assert db.port in container_ports(services[db.hostname]), (name, db.port)
        assert db.username == postgres_env["POSTGRES_USER"]
        assert db.password == postgres_env["POSTGRES_PASSWORD"]
        assert db.path.lstrip("/") == postgres_env["POSTGRES_DB"]

        for server in env["LABSTREAM_KAFKA_BOOTSTRAP_SERVERS"].split(","):
            host, _, port = server.rpartition(":")
            assert host in services, (name, host)
            assert (host, int(port)) in kafka_advertised.values(), (name, server)
            assert int(port) in container_ports(services[host])

        otlp = urlsplit(env["OTEL_EXPORTER_OTLP_ENDPOINT"])
        assert otlp.hostname in services and otlp.port in container_ports(services[otlp.hostname])
        assert otlp.port == 4318  # labstream exports OTLP over HTTP/protobuf


def test_depends_on_targets_exist_and_health_conditions_have_healthchecks(
    services: dict[str, dict[str, Any]],
) -> None:
    for name, service in services.items():
        depends = service.get("depends_on") or {}
        targets = depends.items() if isinstance(depends, dict) else ((d, {}) for d in depends)
        for target, options in targets:
            assert target in services, f"{name} depends on unknown service {target}"
            condition = (options or {}).get("condition", "service_started")
            if condition == "service_healthy":
                assert "healthcheck" in services[target], f"{target} has no healthcheck"
            if condition == "service_completed_successfully":
                assert services[target].get("restart") == "no", f"{target} must be one-shot"
    for name in ("postgres", "kafka"):
        assert services[name]["healthcheck"]["test"]
    for name in ("connector", "worker"):
        assert (
            services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        )
        assert services[name]["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_labstream_services_run_labstream_commands_from_the_repo_image(
    services: dict[str, dict[str, Any]],
) -> None:
    expected = {
        "migrate": ["labstream", "db", "migrate"],
        "connector": ["labstream", "cdc"],
        "worker": ["labstream", "worker"],
        "api": ["labstream", "api", "--host", "0.0.0.0", "--port", "8080"],
        "registry": ["labstream", "registry", "serve", "--host", "0.0.0.0", "--port", "8081",
                     "--read-only"],
    }
    for name, command in expected.items():
        assert services[name]["command"] == command
        assert services[name]["build"] == "."
    assert services["simulator"]["command"][:2] == ["labstream", "simulate"]
    api = services["api"]["command"]
    # reachable from outside its container: all interfaces, on the port it exposes
    assert api[api.index("--host") + 1] == "0.0.0.0"
    assert int(api[api.index("--port") + 1]) in container_ports(services["api"])


def test_long_running_http_services_have_healthchecks_on_their_own_port(
    services: dict[str, dict[str, Any]],
) -> None:
    for name in ("api", "registry"):
        command = services[name]["command"]
        port = command[command.index("--port") + 1]
        check = " ".join(services[name]["healthcheck"]["test"])
        assert f"http://127.0.0.1:{port}/" in check, name
        assert services[name]["depends_on"]["migrate"]["condition"] == \
            "service_completed_successfully"


def test_readme_says_how_to_validate_the_compose_file() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    assert "docker compose config" in readme


def test_dockerfile_installs_the_project() -> None:
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    instructions = [
        line.strip()
        for line in dockerfile.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert instructions[0].startswith("FROM python:3.11")
    copies = [line for line in instructions if line.startswith("COPY")]
    installs = [line for line in instructions if line.startswith("RUN") and "pip install ." in line]
    assert copies and installs
    assert instructions.index(copies[0]) < instructions.index(installs[0])
    ignored = (REPO_ROOT / ".dockerignore").read_text().split()
    assert {".venv", ".state", ".git"} <= set(ignored)  # never bake local state into the image
    assert Path(REPO_ROOT / "pyproject.toml").exists()
