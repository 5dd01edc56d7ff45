"""The lab-database schema registry over HTTP, in the Confluent Schema Registry REST shape.

Stock clients (confluent-kafka's `SchemaRegistryClient` and `AvroDeserializer`, the
Java `KafkaAvroDeserializer`, Kafka Connect's AvroConverter) point their
`schema.registry.url` here and read labstream's records without knowing about the lab
database. Served standalone by `labstream registry serve` (for consumers: it needs no
lab API credentials) and mounted under `/registry` in the lab API.

With `read_only` (`labstream registry serve --read-only`, and always in the lab API)
it answers like a Confluent registry in READONLY mode: reads, lookups and compatibility
tests work, writes get 42205. The connector registers through the database itself.

Routes, bodies, error codes and the content type follow Confluent's API reference;
what the lab registry does not do is refused with a Confluent-style error, never
ignored: schema types other than AVRO, schema references, deleting schemas (records in
Kafka name their schema by id, so the lab registry keeps every one).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from base.errors import ServiceUnavailable
from connectors.exceptions import IncompatibleSchema, InvalidSchema
from connectors.registry import compat
from connectors.registry.base import RegisteredSchema
from connectors.registry.db import DbSchemaRegistry

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
MAX_VERSION = 2**31 - 1


class RegistryHttpError(Exception):
    """A Confluent error body: `{"error_code": ..., "message": ...}` with its HTTP status."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def subject_not_found(subject: str) -> RegistryHttpError:
    return RegistryHttpError(404, 40401, f"Subject '{subject}' not found.")


def version_not_found(version: int | None) -> RegistryHttpError:
    return RegistryHttpError(404, 40402, f"Version {version} not found.")


def schema_not_found(detail: str = "Schema not found") -> RegistryHttpError:
    return RegistryHttpError(404, 40403, detail)


def reply(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body), status, media_type=CONTENT_TYPE)


def parse_version(text: str) -> int | None:
    """`latest` / -1 -> None (latest); 1..2^31-1 -> the number; else Confluent's 42202."""
    if text == "latest" or text == "-1":
        return None
    if text.isdigit() and 1 <= int(text) <= MAX_VERSION:
        return int(text)
    raise RegistryHttpError(
        422, 42202, f"The specified version '{text}' is not a valid version id. Allowed "
        f"values are between [1, {MAX_VERSION}] and the string \"latest\"",
    )


def parse_id(text: str) -> int:
    if not text.isdigit() or int(text) > MAX_VERSION:
        raise RegistryHttpError(422, 42201, f"Invalid schema id '{text}': a positive integer")
    return int(text)


async def schema_body(request: Request) -> str:
    """The `schema` text of a register/lookup/compatibility body, checked."""
    try:
        body = json.loads(await request.body() or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RegistryHttpError(422, 422, f"request body is not JSON: {exc}") from exc
    if not isinstance(body, dict) or not isinstance(body.get("schema"), str):
        raise RegistryHttpError(422, 42201, 'Invalid schema: the body needs a "schema" string')
    kind = str(body.get("schemaType") or "AVRO").upper()
    if kind != "AVRO":
        raise RegistryHttpError(
            422, 42201, f"Invalid schema: schemaType {kind} is not supported (only AVRO)")
    if body.get("references"):
        raise RegistryHttpError(
            422, 42201, "Invalid schema: schema references are not supported")
    text: str = body["schema"]
    try:
        compat.parse(text)
    except InvalidSchema as exc:
        raise RegistryHttpError(422, 42201, f"Invalid schema: {exc.message}") from exc
    return text


def version_doc(found: RegisteredSchema) -> dict[str, Any]:
    return {"subject": found.subject, "version": found.version, "id": found.schema_id,
            "schema": found.schema}


Handler = Callable[[Request, DbSchemaRegistry], Awaitable[Response]]


class RegistryRoutes:
    """The handlers; DB calls (psycopg, blocking) run in Starlette's thread pool."""

    def __init__(self, registry: DbSchemaRegistry, *, read_only: bool = False) -> None:
        self.registry = registry
        self.read_only = read_only

    def writable(self) -> None:
        """Confluent's answer to a write in READONLY mode (42205)."""
        if self.read_only:
            raise RegistryHttpError(
                422, 42205, "Operation not permitted: this registry is read-only (the "
                "connector registers schemas itself; serve without --read-only to write)")

    async def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await run_in_threadpool(fn, *args)

    async def existing_subject(self, subject: str) -> list[int]:
        versions: list[int] = await self.call(self.registry.versions, subject)
        if not versions:
            raise subject_not_found(subject)
        return versions

    async def one_version(self, subject: str, text: str) -> RegisteredSchema:
        version = parse_version(text)
        await self.existing_subject(subject)
        found: RegisteredSchema | None = await self.call(self.registry.version, subject, version)
        if found is None:
            raise version_not_found(version)
        return found

    async def one_id(self, request: Request) -> list[RegisteredSchema]:
        schema_id = parse_id(request.path_params["id"])
        rows: list[RegisteredSchema] = await self.call(self.registry.by_id, schema_id)
        if not rows:
            raise schema_not_found(f"Schema {schema_id} not found")
        return rows

    # -- schemas by id ---------------------------------------------------------------

    async def schema_by_id(self, request: Request) -> Response:
        return reply({"schema": (await self.one_id(request))[0].schema})

    async def raw_schema_by_id(self, request: Request) -> Response:
        return Response((await self.one_id(request))[0].schema, media_type=CONTENT_TYPE)

    async def subjects_by_id(self, request: Request) -> Response:
        return reply([row.subject for row in await self.one_id(request)])

    async def versions_by_id(self, request: Request) -> Response:
        return reply([{"subject": r.subject, "version": r.version}
                      for r in await self.one_id(request)])

    # -- subjects --------------------------------------------------------------------

    async def list_subjects(self, request: Request) -> Response:
        return reply(await self.call(self.registry.subjects))

    async def list_versions(self, request: Request) -> Response:
        return reply(await self.existing_subject(request.path_params["subject"]))

    async def get_version(self, request: Request) -> Response:
        params = request.path_params
        return reply(version_doc(await self.one_version(params["subject"], params["version"])))

    async def raw_version(self, request: Request) -> Response:
        params = request.path_params
        found = await self.one_version(params["subject"], params["version"])
        return Response(found.schema, media_type=CONTENT_TYPE)

    async def referenced_by(self, request: Request) -> Response:
        params = request.path_params
        await self.one_version(params["subject"], params["version"])
        return reply([])  # no references in the lab registry

    async def lookup(self, request: Request) -> Response:
        subject = request.path_params["subject"]
        text = await schema_body(request)
        await self.existing_subject(subject)
        found: RegisteredSchema | None = await self.call(self.registry.lookup, subject, text)
        if found is None:
            raise schema_not_found()
        return reply(version_doc(found))

    async def register(self, request: Request) -> Response:
        subject = request.path_params["subject"]
        self.writable()
        text = await schema_body(request)
        try:
            found: RegisteredSchema = await self.call(
                self.registry.register_version, subject, text)
        except IncompatibleSchema as exc:
            raise RegistryHttpError(409, 409, exc.message) from exc
        return reply({"id": found.schema_id})

    async def refuse_delete(self, request: Request) -> Response:
        raise RegistryHttpError(
            405, 405, "Deleting is not supported by the lab-database registry: records in "
            "Kafka name their schema by id, so every schema is kept")

    # -- compatibility -----------------------------------------------------------------

    async def get_global_config(self, request: Request) -> Response:
        return reply({"compatibilityLevel": await self.call(self.registry.level, None)})

    async def get_subject_config(self, request: Request) -> Response:
        subject = request.path_params["subject"]
        fallback = request.query_params.get("defaultToGlobal", "false").lower() == "true"
        level = await self.call(lambda: self.registry.level(subject, fallback=fallback))
        if level is None:
            raise RegistryHttpError(404, 40408, f"Subject '{subject}' does not have "
                                    "subject-level compatibility configured")
        return reply({"compatibilityLevel": level})

    async def put_config(self, request: Request) -> Response:
        subject = request.path_params.get("subject")
        self.writable()
        try:
            body = json.loads(await request.body() or b"null")
            level = compat.check_level(str(body["compatibility"]))
        except (json.JSONDecodeError, UnicodeDecodeError, TypeError, KeyError, ValueError) as exc:
            raise RegistryHttpError(
                422, 42203, f"Invalid compatibility level: send {{\"compatibility\": one of "
                f"{', '.join(compat.LEVELS)}}} ({exc})") from exc
        return reply({"compatibility": await self.call(self.registry.set_level, subject, level)})

    async def delete_config(self, request: Request) -> Response:
        subject = request.path_params["subject"]
        self.writable()
        removed = await self.call(self.registry.delete_level, subject)
        if removed is None:
            raise subject_not_found(subject)
        return reply({"compatibilityLevel": removed})

    async def test_compatibility(self, request: Request) -> Response:
        subject = request.path_params["subject"]
        text = await schema_body(request)
        versions = await self.existing_subject(subject)
        level: str = await self.call(self.registry.level, subject)
        if "version" in request.path_params:
            against = [(await self.one_version(subject, request.path_params["version"])).schema]
            level = level.replace("_TRANSITIVE", "")  # one version named: check that one
        else:
            against = [(await self.one_version(subject, str(v))).schema for v in versions]
        problems = compat.incompatibilities(level, text, against)
        body: dict[str, Any] = {"is_compatible": not problems}
        if request.query_params.get("verbose", "false").lower() == "true":
            body["messages"] = problems
        return reply(body)


def _guard(handler: Callable[[Request], Awaitable[Response]]) -> Callable[..., Any]:
    """Errors become Confluent error bodies: 4xx with the code, 500/50001 for the store."""

    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request)
        except RegistryHttpError as exc:
            return reply({"error_code": exc.code, "message": exc.message}, exc.status)
        except ServiceUnavailable as exc:
            return reply({"error_code": 50001, "message": f"Error in the backend data store: "
                          f"{exc}"}, 500)
        except psycopg.DataError as exc:  # e.g. a NUL byte in a subject name
            return reply({"error_code": 422, "message": "Unprocessable entity: "
                          f"{exc.diag.message_primary or exc}"}, 422)

    endpoint.__name__ = getattr(handler, "__name__", "endpoint")
    return endpoint


def registry_routes(registry: DbSchemaRegistry, *, read_only: bool = False) -> list[Route]:
    h = RegistryRoutes(registry, read_only=read_only)

    async def root(request: Request) -> Response:
        return reply({})

    async def types(request: Request) -> Response:
        return reply(["AVRO"])

    async def mode(request: Request) -> Response:
        return reply({"mode": "READONLY" if read_only else "READWRITE"})

    table: list[tuple[str, Callable[[Request], Awaitable[Response]], list[str]]] = [
        ("/", root, ["GET"]),
        ("/schemas/types", types, ["GET"]),
        ("/mode", mode, ["GET"]),
        ("/schemas/ids/{id}", h.schema_by_id, ["GET"]),
        ("/schemas/ids/{id}/schema", h.raw_schema_by_id, ["GET"]),
        ("/schemas/ids/{id}/subjects", h.subjects_by_id, ["GET"]),
        ("/schemas/ids/{id}/versions", h.versions_by_id, ["GET"]),
        ("/subjects", h.list_subjects, ["GET"]),
        ("/subjects/{subject}", h.lookup, ["POST"]),
        ("/subjects/{subject}", h.refuse_delete, ["DELETE"]),
        ("/subjects/{subject}/versions", h.list_versions, ["GET"]),
        ("/subjects/{subject}/versions", h.register, ["POST"]),
        ("/subjects/{subject}/versions/{version}", h.get_version, ["GET"]),
        ("/subjects/{subject}/versions/{version}", h.refuse_delete, ["DELETE"]),
        ("/subjects/{subject}/versions/{version}/schema", h.raw_version, ["GET"]),
        ("/subjects/{subject}/versions/{version}/referencedby", h.referenced_by, ["GET"]),
        ("/config", h.get_global_config, ["GET"]),
        ("/config", h.put_config, ["PUT"]),
        ("/config/{subject}", h.get_subject_config, ["GET"]),
        ("/config/{subject}", h.put_config, ["PUT"]),
        ("/config/{subject}", h.delete_config, ["DELETE"]),
        ("/compatibility/subjects/{subject}/versions", h.test_compatibility, ["POST"]),
        ("/compatibility/subjects/{subject}/versions/{version}", h.test_compatibility,
         ["POST"]),
    ]
    return [Route(path, _guard(fn), methods=methods) for path, fn, methods in table]


def create_registry_app(
    *, database_url: str | None = None, registry: DbSchemaRegistry | None = None,
    read_only: bool = False,
) -> Starlette:
    """The registry as an ASGI app (connects to the lab database on the first request).
    `read_only`: lookups and compatibility tests only; registering and setting levels
    get Confluent's 42205, as a registry in READONLY mode answers."""

    async def not_routed(request: Request, exc: Exception) -> Response:
        status = int(getattr(exc, "status_code", 404))
        what = "Not Found" if status == 404 else "Method Not Allowed"
        return reply({"error_code": status, "message": f"HTTP {status} {what}"}, status)

    return Starlette(
        routes=registry_routes(registry or DbSchemaRegistry(database_url), read_only=read_only),
        exception_handlers={404: not_routed, 405: not_routed},
    )
