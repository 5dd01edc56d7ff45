"""One topic, one registry: refuse to register a subject in a second registry.

Records name their writer schema by id, and ids mean something only in the
registry that handed them out. A connector that wrote `lab.public.runs` with the
lab-database registry and is restarted with `SCHEMA_REGISTRY_URL` set would put
records with two registries' ids in one topic; no consumer could read them all.
So the lab database remembers subjects registered elsewhere
(`labstream.schema_registry_external`, migration 0011) and each path checks the
other before a subject's first registration in the process.
"""

from __future__ import annotations

import threading

import psycopg

from base.db import connect, resolve_url
from base.errors import ServiceUnavailable
from connectors.exceptions import MixedRegistries, RegistryUnavailable

_HINT = ("keep the registry the topic was written with, or write to new topics "
         "(another LABSTREAM_CDC_TOPIC_PREFIX)")


def refuse_lab_registration(conn: psycopg.Connection, subject: str) -> None:
    """Inside the lab registry's transaction, before a subject's first version."""
    row = conn.execute("SELECT registry_url FROM labstream.schema_registry_external "
                       "WHERE subject = %s", (subject,)).fetchone()
    if row is not None:
        raise MixedRegistries(
            f"subject {subject!r} was registered in the schema registry at {row[0]}: "
            "registering it in the lab database would mix two registries' ids in one topic",
            hint=f"set SCHEMA_REGISTRY_URL={row[0]} again; or {_HINT}",
        )


class ExternalRegistryGuard:
    """Called by `ConfluentSchemaRegistry` before it registers a subject."""

    def __init__(self, database_url: str | None = None) -> None:
        self.database_url = resolve_url(database_url)
        self._claimed: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, subject: str, registry_url: str) -> None:
        if subject in self._claimed:
            return
        with self._lock:
            try:
                with connect(self.database_url, application_name="labstream-registry") as conn:
                    self._claim(conn, subject, registry_url)
            except ServiceUnavailable as exc:
                raise RegistryUnavailable(exc.message, hint=exc.hint) from exc
            except psycopg.errors.UndefinedTable as exc:
                raise RegistryUnavailable(
                    f"a schema registry table does not exist: {exc.diag.message_primary}",
                    hint="run `labstream db migrate`",
                ) from exc
            except psycopg.OperationalError as exc:
                raise RegistryUnavailable(f"lab database query failed: {exc}") from exc
            self._claimed.add(subject)

    @staticmethod
    def _claim(conn: psycopg.Connection, subject: str, registry_url: str) -> None:
        with conn.transaction():
            lab = conn.execute("SELECT count(*) FROM labstream.schema_registry "
                               "WHERE subject = %s", (subject,)).fetchone()
            if lab is not None and lab[0]:
                raise MixedRegistries(
                    f"subject {subject!r} has {lab[0]} schema version(s) in the lab-database "
                    f"registry: registering it at {registry_url} would mix two registries' "
                    "ids in one topic",
                    hint=f"unset SCHEMA_REGISTRY_URL; or {_HINT}",
                )
            conn.execute("INSERT INTO labstream.schema_registry_external (subject, registry_url)"
                         " VALUES (%s, %s) ON CONFLICT (subject) DO NOTHING",
                         (subject, registry_url))
