"""Where the stack keeps everything it writes: all of it under the state folder.

PostgreSQL refuses to run as root, so its files belong to the `postgres` OS user,
who must be able to reach them. When the state folder sits below a folder that
user cannot traverse (a clone under /root, say), the PostgreSQL home moves to
`<pg_data_root>/<hash of the state folder>` and `<state>/postgres` becomes a
symlink to it: `down --purge` still removes both.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from base.settings import REPO_ROOT

STACK_FILES = REPO_ROOT / "stack"
# a Unix socket path must fit in sun_path (108 bytes, with ".s.PGSQL.NNNNN")
MAX_SOCKET_DIR_LEN = 90


@dataclass(frozen=True)
class StatePaths:
    state_dir: Path

    @property
    def lock(self) -> Path:
        return self.state_dir / "stack.lock"

    @property
    def pids(self) -> Path:
        return self.state_dir / "pids"

    # PostgreSQL
    @property
    def pg_link(self) -> Path:
        """`<state>/postgres`: the PostgreSQL home itself, or a symlink to it."""
        return self.state_dir / "postgres"

    def pg_home_outside(self, pg_data_root: Path) -> Path:
        digest = hashlib.sha256(str(self.state_dir.resolve()).encode()).hexdigest()[:12]
        return pg_data_root / digest

    @property
    def pg_data(self) -> Path:
        return self.pg_link / "data"

    @property
    def pg_log(self) -> Path:
        return self.pg_link / "postgres.log"

    @property
    def pg_pid(self) -> Path:
        return self.pids / "postgres.pid"

    # Kafka
    @property
    def kafka(self) -> Path:
        return self.state_dir / "kafka"

    @property
    def kafka_libs(self) -> Path:
        return self.kafka / "libs"

    @property
    def kafka_data(self) -> Path:
        return self.kafka / "data"

    @property
    def kafka_logs(self) -> Path:
        return self.kafka / "logs"

    @property
    def kafka_log(self) -> Path:
        return self.kafka_logs / "server.log"

    @property
    def kafka_stdout(self) -> Path:
        return self.kafka_logs / "kafka.out"

    @property
    def kafka_properties(self) -> Path:
        return self.kafka / "server.properties"

    @property
    def kafka_log4j(self) -> Path:
        return self.kafka / "log4j2.xml"

    @property
    def kafka_cluster_id(self) -> Path:
        return self.kafka / "cluster.id"

    @property
    def kafka_pid(self) -> Path:
        return self.pids / "kafka.pid"


def socket_dir_for(pg_home: Path) -> Path:
    """The PostgreSQL home when its path is short enough for a socket, else /tmp."""
    if len(str(pg_home)) <= MAX_SOCKET_DIR_LEN:
        return pg_home
    digest = hashlib.sha256(str(pg_home).encode()).hexdigest()[:12]
    return Path("/tmp") / f"labstream-pg-{digest}"
