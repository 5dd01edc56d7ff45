"""Our own PostgreSQL cluster, from Debian's packages, under the state folder.

Never the Debian system cluster: `initdb` makes a cluster in `<state>/postgres/data`
(see paths.py for the case where the postgres OS user cannot reach the state
folder), configured from stack/postgresql/, listening on 127.0.0.1 only.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from base.errors import ConfigError
from labstream.stack import config, procs
from labstream.stack.exceptions import ReplicationRefused, StackError, ToolMissing
from labstream.stack.paths import StatePaths, socket_dir_for
from labstream.stack.ports import ensure_port_free
from labstream.stack.runas import give_to_pg_user, pg_user_can_reach, run_as_pg
from labstream.stack.settings import DATABASE_URL_ENV

Report = Callable[[str], None]
PG_LIB = Path("/usr/lib/postgresql")
INCLUDE_LINE = "include = 'labstream.conf'"


@dataclass(frozen=True)
class PgTarget:
    """What `up` makes: where it listens and the role/database it creates."""

    host: str
    port: int
    role: str
    password: str
    database: str

    @classmethod
    def from_url(cls, url: str) -> PgTarget:
        parts = urlsplit(url)
        return cls(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or 5432,
            role=unquote(parts.username or "lab"),
            password=unquote(parts.password or "lab"),
            database=parts.path.lstrip("/") or "lab",
        )


def installed_versions(pg_lib: Path = PG_LIB) -> list[int]:
    found = [p.parent.parent.name for p in pg_lib.glob("*/bin/initdb")]
    return sorted(int(v) for v in found if v.isdigit())


def ensure_installed(report: Report, pg_lib: Path = PG_LIB) -> None:
    if installed_versions(pg_lib):
        return
    if shutil.which("apt-get") is None:
        raise ToolMissing(
            f"PostgreSQL is not installed (no {pg_lib}/*/bin/initdb) and apt-get is missing",
            hint="install PostgreSQL 15 server binaries from your distribution",
        )
    report("PostgreSQL is not installed: running apt-get update && apt-get install -y postgresql")
    for argv in (["apt-get", "update"], ["apt-get", "install", "-y", "postgresql"]):
        result = subprocess.run(
            argv, capture_output=True, text=True, check=False,
            env={"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
        )
        if result.returncode != 0:
            raise ToolMissing(
                f"`{' '.join(argv)}` failed: {result.stderr.strip()[-800:]}",
                hint="run `apt-get update && apt-get install -y postgresql` as root",
            )
    if not installed_versions(pg_lib):
        raise ToolMissing("apt-get installed postgresql but no initdb appeared", hint=str(pg_lib))


def bin_dir(paths: StatePaths, pg_lib: Path = PG_LIB) -> Path:
    """The binaries matching an existing cluster's major version, else the newest."""
    versions = installed_versions(pg_lib)
    version_file = paths.pg_data / "PG_VERSION"
    if version_file.exists():
        wanted = int(version_file.read_text().strip())
        if wanted not in versions:
            raise ToolMissing(
                f"the cluster in {paths.pg_data} is PostgreSQL {wanted}, "
                f"installed: {versions or 'none'}",
                hint=f"apt-get install -y postgresql-{wanted}, or `labstream stack down --purge`",
            )
        return pg_lib / str(wanted) / "bin"
    return pg_lib / str(versions[-1]) / "bin"


def prepare_home(paths: StatePaths, pg_data_root: Path) -> Path:
    """Make the PostgreSQL home (owned by postgres) and return its real path."""
    paths.state_dir.mkdir(parents=True, exist_ok=True)
    link = paths.pg_link
    if link.is_symlink() or link.is_dir():
        home = link.resolve()
        home.mkdir(parents=True, exist_ok=True)
    elif pg_user_can_reach(paths.state_dir):
        home = link
        home.mkdir()
    else:
        home = paths.pg_home_outside(pg_data_root)
        if home.exists() and _postmaster_pid(home / "data") is None:
            # left by an earlier state folder at the same path, deleted without
            # `down --purge` (a CI clone): nothing points to it, start clean
            shutil.rmtree(home)
        pg_data_root.mkdir(parents=True, exist_ok=True, mode=0o755)
        home.mkdir(parents=True, exist_ok=True)
        link.symlink_to(home, target_is_directory=True)
    give_to_pg_user(home)
    if not pg_user_can_reach(home):
        raise ConfigError(
            f"the postgres OS user cannot reach {home} (nor {paths.state_dir})",
            hint="make its parent folders traversable (chmod o+x), or set "
            "LABSTREAM_STACK_PG_DATA_ROOT to a folder it can reach",
        )
    return home.resolve()


def _write_for_pg(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(0o600)
    give_to_pg_user(path)


def init_cluster(paths: StatePaths, home: Path, bins: Path, target: PgTarget) -> None:
    data = home / "data"
    if not (data / "PG_VERSION").exists():
        result = run_as_pg(
            [str(bins / "initdb"), "-D", str(data), "--encoding=UTF8", "--no-locale",
             "--auth-local=peer", "--auth-host=scram-sha-256"],
            cwd=home,
        )
        if result.returncode != 0:
            raise StackError(
                f"initdb failed in {data}: {result.stderr.strip()[-1500:]}",
                hint="look at the message above; `labstream stack down --purge` starts afresh",
            )
    main_conf = data / "postgresql.conf"
    if INCLUDE_LINE not in main_conf.read_text():
        with open(main_conf, "a") as handle:
            handle.write(f"\n# labstream's settings\n{INCLUDE_LINE}\n")
    socket_dir = socket_dir_for(home)
    socket_dir.mkdir(parents=True, exist_ok=True)
    give_to_pg_user(socket_dir)
    conf = config.postgres_conf(port=target.port, socket_dir=socket_dir)
    _write_for_pg(data / "labstream.conf", conf)
    _write_for_pg(data / "pg_hba.conf", config.pg_hba())


def running_pid(paths: StatePaths) -> int | None:
    return procs.live_pid(paths.pg_pid)


def start(paths: StatePaths, home: Path, bins: Path, target: PgTarget, timeout_s: float) -> int:
    data = home / "data"
    if (pid := _postmaster_pid(data)) is not None:
        # already running: pick up edited settings that need no restart
        run_as_pg([str(bins / "pg_ctl"), "-D", str(data), "reload"], cwd=home)
        procs.write_pid(paths.pg_pid, pid, str(data))
        return pid
    ensure_port_free("PostgreSQL", target.host, target.port, env_var=DATABASE_URL_ENV)
    result = run_as_pg(
        [str(bins / "pg_ctl"), "-D", str(data), "-l", str(home / "postgres.log"),
         "-w", "-t", str(int(timeout_s)), "start"],
        cwd=home, timeout_s=timeout_s + 30,
    )
    pid = _postmaster_pid(data)
    if result.returncode != 0 or pid is None:
        raise StackError(
            f"PostgreSQL did not start: {result.stderr.strip()[-500:]}\n"
            f"--- {paths.pg_log} ---\n{procs.tail_lines(home / 'postgres.log')}",
            hint="fix what the log says, then `labstream stack up` again",
        )
    procs.write_pid(paths.pg_pid, pid, str(data))
    return pid


def _postmaster_pid(data: Path) -> int | None:
    """The running postmaster of this data folder, from postmaster.pid, checked in /proc."""
    try:
        first = (data / "postmaster.pid").read_text().splitlines()[0].strip()
    except (OSError, IndexError):
        return None
    if not first.isdigit():
        return None
    record = procs.PidRecord(int(first), str(data))
    return record.pid if procs.is_running(record) else None


def bootstrap_role(home: Path, bins: Path, target: PgTarget) -> None:
    """Create (or fix) the lab role with LOGIN REPLICATION and its database. Idempotent."""
    sql = """
\\set ON_ERROR_STOP on
SELECT format('CREATE ROLE %I', :'role') WHERE NOT EXISTS
  (SELECT FROM pg_roles WHERE rolname = :'role') \\gexec
SELECT format('ALTER ROLE %I WITH LOGIN REPLICATION PASSWORD %L', :'role', :'pw') \\gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'role') WHERE NOT EXISTS
  (SELECT FROM pg_database WHERE datname = :'db') \\gexec
"""
    result = run_as_pg(
        [str(bins / "psql"), "-X", "-q", "-h", str(socket_dir_for(home)), "-p", str(target.port),
         "-d", "postgres", "-v", f"role={target.role}", "-v", f"pw={target.password}",
         "-v", f"db={target.database}", "-f", "-"],
        cwd=home, input_text=sql,
    )
    if result.returncode != 0:
        raise StackError(
            f"could not create role/database {target.role}/{target.database}: "
            f"{result.stderr.strip()[-800:]}",
            hint="see <state>/postgres/postgres.log",
        )


def wait_ready(database_url: str, log_path: Path, timeout_s: float) -> None:
    """Connect as the lab role; check it may replicate and wal_level is logical."""
    import psycopg

    deadline = time.monotonic() + timeout_s
    last_error = ""
    while time.monotonic() < deadline:
        try:
            with psycopg.connect(database_url, connect_timeout=5) as conn:
                row = conn.execute(
                    "SELECT current_setting('wal_level'), rolreplication "
                    "FROM pg_roles WHERE rolname = current_user"
                ).fetchone()
            break
        except psycopg.OperationalError as exc:
            last_error = str(exc).strip()
            time.sleep(0.5)
    else:
        raise StackError(
            f"PostgreSQL is not answering SQL at {_safe(database_url)}: {last_error}\n"
            f"--- {log_path} ---\n{procs.tail_lines(log_path)}",
            hint="fix what the log says, then `labstream stack up` again",
        )
    check_replication(row, database_url)


def check_replication(row: tuple[str, bool] | None, database_url: str) -> None:
    wal_level, can_replicate = row if row else ("?", False)
    if wal_level != "logical":
        raise ReplicationRefused(
            f"PostgreSQL at {_safe(database_url)} has wal_level={wal_level}: "
            "logical replication (CDC) needs wal_level=logical",
            hint="set wal_level = logical in postgresql.conf and restart it, "
            f"or point {DATABASE_URL_ENV} at the stack's own PostgreSQL",
        )
    if not can_replicate:
        raise ReplicationRefused(
            f"the role of {_safe(database_url)} lacks the REPLICATION attribute",
            hint="ALTER ROLE <role> WITH REPLICATION (as a superuser)",
        )


def _safe(url: str) -> str:
    """The URL without its password, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return url.replace(f":{parts.password}@", ":***@", 1)


def stop(paths: StatePaths, timeout_s: float = 60.0) -> bool:
    """pg_ctl stop -m fast; if that fails, TERM/KILL the postmaster. True if it ran."""
    data = paths.pg_data.resolve() if paths.pg_link.exists() else paths.pg_data
    pid = _postmaster_pid(data)
    if pid is None:
        paths.pg_pid.unlink(missing_ok=True)
        return False
    bins = bin_dir(paths)
    result = run_as_pg(
        [str(bins / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "-t", str(int(timeout_s)),
         "stop"],
        cwd=data.parent, timeout_s=timeout_s + 15,
    )
    if result.returncode != 0 or not procs.wait_gone(pid, 5.0):
        procs.terminate(procs.PidRecord(pid, str(data)))
    paths.pg_pid.unlink(missing_ok=True)
    return True


def status_pid(paths: StatePaths) -> int | None:
    if not paths.pg_link.exists():
        return None
    return _postmaster_pid(paths.pg_data.resolve())
