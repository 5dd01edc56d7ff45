"""`labstream explain <experiment-id | trace-id | traceparent> [--json]`."""

from __future__ import annotations

import json

import click

from connectors.source.config import CdcSettings
from explain.facts import Sources, gather_facts
from explain.render import explanation_document, render_text
from explain.verdict import explain as explain_facts
from streams.config import WorkerSettings


@click.command("explain")
@click.argument("query")
@click.option("--json", "as_json", is_flag=True, help="Print the answers as JSON (stable keys).")
@click.option("--database-url", envvar="LABSTREAM_DATABASE_URL", help="The lab DB.")
@click.option("--bootstrap-servers", envvar="LABSTREAM_KAFKA_BOOTSTRAP_SERVERS",
              help="Kafka bootstrap servers.")
@click.option("--topic-prefix", help="CDC topic prefix (default LABSTREAM_CDC_TOPIC_PREFIX, lab).")
@click.option("--connector", help="CDC connector name (default LABSTREAM_CDC_NAME or the slot).")
@click.option("--publication", help="CDC publication (default LABSTREAM_CDC_PUBLICATION).")
@click.option("--worker-group", help="Worker app id / consumer group "
              "(default LABSTREAM_WORKER_APP_ID, labstream-worker).")
@click.option("--decisions-topic", help="Decisions topic (default LABSTREAM_WORKER_DECISIONS_"
              "TOPIC, lab.decisions).")
@click.option("--budget", "budget_s", type=float, default=20.0, show_default=True,
              help="Seconds each Kafka topic scan may take at most.")
def explain(query: str, as_json: bool, database_url: str | None, bootstrap_servers: str | None,
            topic_prefix: str | None, connector: str | None, publication: str | None,
            worker_group: str | None, decisions_topic: str | None, budget_s: float) -> None:
    """Why did (or didn't) this experiment's chain run? QUERY is an experiment id, a
    trace id or a traceparent.

    Answers in order, with the evidence: did the change reach Kafka, did a rule
    fire (or why not), did the job start, did it succeed; and, for the first
    "no", what to do next. Reads the lab DB (experiments, runs, jobs, job log
    lines, labstream.spans, the connector's slot and publication) and Kafka (the
    CDC topics, the decisions topic, the worker group's offsets and dead letters).
    """
    cdc_values = {"topic_prefix": topic_prefix, "name": connector, "publication": publication}
    worker_values = {"app_id": worker_group, "decisions_topic": decisions_topic}
    sources = Sources.from_settings(
        database_url=database_url, bootstrap_servers=bootstrap_servers,
        cdc=CdcSettings().model_copy(update=_given(cdc_values)),
        worker=WorkerSettings().model_copy(update=_given(worker_values)),
        budget_s=budget_s,
    )
    facts = gather_facts(query, sources)
    explanation = explain_facts(facts)
    if as_json:
        click.echo(json.dumps(explanation_document(explanation, facts), indent=2, default=str))
    else:
        click.echo(render_text(explanation, facts))


def _given(values: dict[str, str | None]) -> dict[str, str]:
    return {name: value for name, value in values.items() if value is not None}
