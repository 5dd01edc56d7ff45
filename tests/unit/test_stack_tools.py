"""Missing or unusable tools (Java, Maven, PostgreSQL) give errors that name the fix."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from labstream.stack import kafka, postgres
from labstream.stack.exceptions import ReplicationRefused, ToolMissing
from labstream.stack.paths import StatePaths


def _fake_java(tmp_path: Path, version_line: str) -> str:
    script = tmp_path / "java"
    script.write_text(f"#!/bin/sh\necho '{version_line}' >&2\n")
    script.chmod(0o755)
    return str(script)


def test_missing_java_names_the_package() -> None:
    with pytest.raises(ToolMissing) as caught:
        kafka.ensure_java(which=lambda name: None)
    assert "Java is not installed" in caught.value.message
    assert caught.value.hint == "apt-get install -y openjdk-17-jre-headless"


def test_old_java_is_refused(tmp_path: Path) -> None:
    java = _fake_java(tmp_path, 'java version "1.8.0_392"')
    with pytest.raises(ToolMissing, match="Java 8: Kafka 4 needs Java 17"):
        kafka.ensure_java(which=lambda name: java)


def test_java_17_is_accepted(tmp_path: Path) -> None:
    java = _fake_java(tmp_path, 'openjdk version "17.0.15" 2025-04-15')
    assert kafka.ensure_java(which=lambda name: java) == java


@pytest.mark.parametrize(
    ("output", "major"),
    [
        ('openjdk version "17.0.15" 2025-04-15', 17),
        ('openjdk version "21" 2023-09-19', 21),
        ('java version "1.8.0_392"', 8),
        ("garbage", None),
    ],
)
def test_java_major(output: str, major: int | None) -> None:
    assert kafka.java_major(output) == major


def test_missing_maven_names_the_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(kafka.shutil, "which", lambda name: None)
    with pytest.raises(ToolMissing) as caught:
        kafka.ensure_libs(StatePaths(tmp_path), report=lambda message: None)
    assert "Maven is not installed" in caught.value.message
    assert caught.value.hint == "apt-get install -y maven"


def test_failing_maven_is_reported_with_its_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mvn = tmp_path / "mvn"
    mvn.write_text("#!/bin/sh\necho 'Could not transfer: Network is unreachable'\nexit 1\n")
    mvn.chmod(0o755)
    monkeypatch.setattr(kafka.shutil, "which", lambda name: str(mvn))
    with pytest.raises(ToolMissing) as caught:
        kafka.ensure_libs(StatePaths(tmp_path / "state"), report=lambda message: None)
    assert "Network is unreachable" in caught.value.message
    assert caught.value.hint is not None and "Maven Central" in caught.value.hint


def test_libs_stamp_follows_pom_and_version(tmp_path: Path) -> None:
    pom = tmp_path / "pom.xml"
    pom.write_text("<project/>")
    paths = StatePaths(tmp_path / "state")
    paths.kafka_libs.mkdir(parents=True)
    (paths.kafka_libs / ".pom-sha256").write_text(kafka.libs_stamp(pom))
    assert kafka.libs_current(paths, pom)
    assert not kafka.libs_current(paths, pom, version="4.1.1")
    pom.write_text("<project><!-- changed --></project>")
    assert not kafka.libs_current(paths, pom)


def test_pinned_kafka_version_in_pom() -> None:
    text = kafka.POM.read_text()
    assert "<kafka.version>4.4.0</kafka.version>" in text
    assert "<slf4j.version>2.0." in text


def test_no_postgresql_and_no_apt_get(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(postgres.shutil, "which", lambda name: None)
    with pytest.raises(ToolMissing, match="PostgreSQL is not installed"):
        postgres.ensure_installed(lambda message: None, pg_lib=tmp_path)


def test_installed_versions_are_sorted_numerically(tmp_path: Path) -> None:
    for version in ("9", "15", "13"):
        (tmp_path / version / "bin").mkdir(parents=True)
        (tmp_path / version / "bin" / "initdb").touch()
    (tmp_path / "common" / "bin").mkdir(parents=True)
    assert postgres.installed_versions(tmp_path) == [9, 13, 15]


def test_cluster_of_a_missing_major_version_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "lib" / "15" / "bin").mkdir(parents=True)
    (tmp_path / "lib" / "15" / "bin" / "initdb").touch()
    paths = StatePaths(tmp_path / "state")
    paths.pg_data.mkdir(parents=True)
    (paths.pg_data / "PG_VERSION").write_text("13\n")
    with pytest.raises(ToolMissing, match="PostgreSQL 13") as caught:
        postgres.bin_dir(paths, pg_lib=tmp_path / "lib")
    assert caught.value.hint is not None and "postgresql-13" in caught.value.hint


def test_wal_level_replica_is_refused() -> None:
    with pytest.raises(ReplicationRefused) as caught:
        postgres.check_replication(("replica", True), "postgresql://lab:pw@127.0.0.1:5432/lab")
    assert "wal_level=replica" in caught.value.message
    assert "pw" not in caught.value.message
    assert caught.value.hint is not None and "wal_level = logical" in caught.value.hint


def test_role_without_replication_is_refused() -> None:
    with pytest.raises(ReplicationRefused, match="REPLICATION"):
        postgres.check_replication(("logical", False), "postgresql://lab@127.0.0.1/lab")


def test_logical_with_replication_passes() -> None:
    postgres.check_replication(("logical", True), "postgresql://lab@127.0.0.1/lab")


class _FakeApt:
    """Stands in for apt-get: records the commands, 'installs' initdb into pg_lib."""

    def __init__(self, pg_lib: Path, fail_on: str | None = None) -> None:
        self.pg_lib = pg_lib
        self.fail_on = fail_on
        self.commands: list[list[str]] = []

    def __call__(self, argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        self.commands.append(argv)
        if argv[1] == self.fail_on:
            return subprocess.CompletedProcess(argv, 100, "", "E: Unable to locate package")
        if argv[1] == "install":
            (self.pg_lib / "15" / "bin").mkdir(parents=True)
            (self.pg_lib / "15" / "bin" / "initdb").touch()
        return subprocess.CompletedProcess(argv, 0, "", "")


def test_missing_postgresql_is_installed_with_apt_and_said_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    apt = _FakeApt(tmp_path)
    monkeypatch.setattr(postgres.shutil, "which", lambda name: "/usr/bin/apt-get")
    monkeypatch.setattr(postgres.subprocess, "run", apt)
    messages: list[str] = []
    postgres.ensure_installed(messages.append, pg_lib=tmp_path)
    assert apt.commands == [["apt-get", "update"], ["apt-get", "install", "-y", "postgresql"]]
    assert len(messages) == 1 and "apt-get install -y postgresql" in messages[0]
    assert postgres.installed_versions(tmp_path) == [15]


def test_failing_apt_names_the_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(postgres.shutil, "which", lambda name: "/usr/bin/apt-get")
    monkeypatch.setattr(postgres.subprocess, "run", _FakeApt(tmp_path, fail_on="install"))
    with pytest.raises(ToolMissing, match="apt-get install -y postgresql` failed: E: Unable"):
        postgres.ensure_installed(lambda message: None, pg_lib=tmp_path)


def test_installed_postgresql_runs_no_apt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "15" / "bin").mkdir(parents=True)
    (tmp_path / "15" / "bin" / "initdb").touch()
    apt = _FakeApt(tmp_path)
    monkeypatch.setattr(postgres.subprocess, "run", apt)
    postgres.ensure_installed(lambda message: None, pg_lib=tmp_path)
    assert apt.commands == []
