"""Render the stack's configuration files from the templates in the repo's stack/ folder."""

from __future__ import annotations

import base64
import uuid
from pathlib import Path
from string import Template

from labstream.stack.paths import STACK_FILES


def render(template: Path, **values: object) -> str:
    """Fill $placeholders; a placeholder without a value is an error, never left as is."""
    return Template(template.read_text()).substitute({k: str(v) for k, v in values.items()})


def postgres_conf(*, port: int, socket_dir: Path, templates: Path = STACK_FILES) -> str:
    return render(templates / "postgresql" / "labstream.conf", pg_port=port, socket_dir=socket_dir)


def pg_hba(templates: Path = STACK_FILES) -> str:
    return (templates / "postgresql" / "pg_hba.conf").read_text()


def kafka_properties(
    *, broker_port: int, controller_port: int, data_dir: Path, templates: Path = STACK_FILES
) -> str:
    return render(
        templates / "kafka" / "server.properties",
        broker_port=broker_port,
        controller_port=controller_port,
        data_dir=data_dir,
    )


def kafka_log4j(templates: Path = STACK_FILES) -> str:
    return (templates / "kafka" / "log4j2.xml").read_text()


def parse_properties(text: str) -> dict[str, str]:
    """key=value lines of a .properties file (no continuation lines: ours have none)."""
    result: dict[str, str] = {}
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith(("#", "!")):
            continue
        key, _, value = stripped.partition("=")
        result[key.strip()] = value.strip()
    return result


def new_cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, base64url without padding, not starting with '-'."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not text.startswith("-"):
            return text
