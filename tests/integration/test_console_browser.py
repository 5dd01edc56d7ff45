"""The lab console in headless Chromium, on the whole chain.

`labstream api` (serving the page), the CDC connector and the stream worker run as
subprocesses with names of their own (`explain_helpers.chain`). On the page, by mouse
and by keyboard, two experiments are submitted with a traceparent made in the
browser; a rule on `experiment.submitted` runs a small Python job that succeeds for
the first and exits 2 for the second. The test waits on the page (no reload) for the
jobs to finish, reads the job view (log lines, exit code, replay command copied), and
finds on the trace view the trace id the page made, with a span from every hop: the
page, the API, CDC, the worker's agents, the job runner and the job itself, plus the
`explain` verdict in words. Screenshots of each view go to docs/screenshots/.

Chromium is Debian's `chromium` package, installed here with apt-get when missing
(never `playwright install`: no browser download), driven by Playwright for Python.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from api_helpers import make_token
from explain_helpers import REPO, Chain, chain, execute, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

CHROMIUM = Path("/usr/bin/chromium")
# Every run saves the views under test-artifacts/ (gitignored) so a test run never
# dirties the work tree; LABSTREAM_UPDATE_SCREENSHOTS=1 refreshes the README's copies.
SCREENSHOTS = (
    REPO / "docs" / "screenshots"
    if os.environ.get("LABSTREAM_UPDATE_SCREENSHOTS") == "1"
    else REPO / "test-artifacts" / "screenshots"
)
SCREENSHOTS.mkdir(parents=True, exist_ok=True)
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync"]
HOPS = {"labstream-console", "labstream-api", "labstream-cdc", "labstream-worker",
        "labstream-job"}
# the job: a few log lines and a span of its own; exits 2 when the protocol says "fail"
JOB_SCRIPT = """
import json, sys, time
from opentelemetry import trace
from streams.jobs.examples._jobkit import job_session
experiment_id, protocol = sys.argv[1], json.loads(sys.argv[2] or "{}")
with job_session():
    with trace.get_tracer("console-e2e").start_as_current_span("summarise experiment"):
        print(f"summarising {experiment_id}", flush=True)
        time.sleep(0.3)
        if protocol.get("fail"):
            print("column C18 is not calibrated", file=sys.stderr, flush=True)
            sys.exit(2)
        print("peaks=2 purity_pct=97.1", flush=True)
"""


def ensure_chromium() -> Path:
    """Debian's chromium, installed the way CI on a fresh machine gets it."""
    if not CHROMIUM.exists():
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for command in (["apt-get", "update"], ["apt-get", "install", "-y", "chromium"]):
            done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900,
                                  check=False)
            if done.returncode != 0:
                pytest.fail(f"{' '.join(command)} failed: {done.stderr[-2000:]}", pytrace=False)
    return CHROMIUM


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def lab_chain(stack: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chain]:
    with chain(stack.database_url, stack.kafka_bootstrap, tmp_path_factory.mktemp("console"),
               otlp_endpoint=None) as running:
        try:
            yield running
        finally:  # the page's polling requests are traces of their own: drop them too
            execute(running.database_url, "DELETE FROM labstream.spans WHERE "
                    "attributes ->> 'lab.tenant.id' = ANY(%s)", (running.tenants,))


@pytest.fixture(scope="module")
def console_url(lab_chain: Chain) -> str:
    port = free_port()
    env = {**lab_chain.cdc_env(), **lab_chain.worker_env(), "LABSTREAM_API_PORT": str(port),
           "LABSTREAM_CONSOLE_EXPLAIN_BUDGET_S": "5"}
    process = lab_chain.start("api", ["api"], env)
    base = f"http://127.0.0.1:{port}"

    def serving() -> bool:
        assert process.poll() is None, f"labstream api exited: {lab_chain.log('api')}"
        try:
            with urllib.request.urlopen(f"{base}/console/", timeout=2) as answer:
                return bool(answer.status == 200)
        except OSError:
            return False

    wait_for(serving, 60, "labstream api to serve the console")
    return base


def add_rule(lab_chain: Chain, tenant: str) -> str:
    """A rule on experiment.submitted that only this chain's worker fires."""
    rule_id = f"r-console-{int(time.time() * 1000) % 10**8}"
    command = [sys.executable, "-c", JOB_SCRIPT, "{experiment_id}", "{payload.protocol}"]
    env = {"OTEL_RESOURCE_ATTRIBUTES": f"labstream.test.chain={lab_chain.name}",
           "LABSTREAM_DATABASE_URL": lab_chain.database_url}
    execute(lab_chain.database_url,
            "INSERT INTO public.trigger_rules (id, tenant_id, event_kind, condition, command, "
            "env, timeout_s) VALUES (%s, %s, 'experiment.submitted', %s, %s, %s, 120)",
            (rule_id, tenant, json.dumps({"origin.topic": f"{lab_chain.name}.public.experiments"}),
             json.dumps(command), json.dumps(env)))
    lab_chain.rules.append(rule_id)
    return rule_id


@pytest.fixture(scope="module")
def browser_context(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    executable = ensure_chromium()
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),  # a fresh --user-data-dir
            executable_path=str(executable), headless=True, args=CHROMIUM_FLAGS,
            viewport={"width": 1280, "height": 800})
        try:
            yield context
        finally:
            context.close()


def wait_js(page: Any, expression: str, timeout_s: float = 30) -> None:
    """Poll a page expression through the DevTools protocol: Playwright's own
    wait_for_function evals in the page, which the console's CSP (no unsafe-eval) blocks."""
    wait_for(lambda: bool(page.evaluate(expression)), timeout_s, expression)


def sign_in(page: Any, token: str) -> None:
    """Type the token into the sign-in form (replacing what is there) and wait until the
    console has checked it and keeps it for the tab."""
    page.focus("#token-input")
    page.keyboard.press("Control+a")
    page.keyboard.type(token)
    page.keyboard.press("Enter")
    wait_js(page, f"sessionStorage.getItem('labstream.token') === {json.dumps(token)}")


def submitted(page: Any, sent: list[str]) -> tuple[str, str, str]:
    """(experiment id, trace id shown, traceparent sent) of the submission just made."""
    page.wait_for_selector("#submitted-trace")
    return page.inner_text("#submitted-experiment"), page.inner_text("#submitted-trace"), sent[-1]


def record_traceparents(page: Any) -> list[str]:
    """The traceparent header of every POST /experiments the page sends, in order."""
    sent: list[str] = []

    def on_request(request: Any) -> None:
        if request.method == "POST" and request.url.endswith("/experiments"):
            sent.append(request.headers.get("traceparent", ""))

    page.on("request", on_request)
    return sent


def services_in_waterfall(page: Any) -> set[str]:
    return set(page.eval_on_selector_all("#waterfall tr[data-service]",
                                         "rows => rows.map(r => r.dataset.service)"))


def wait_for_trace(page: Any, rule_id: str, timeout_s: float = 90) -> None:
    def complete() -> bool:
        names = page.eval_on_selector_all("#waterfall .span-name",
                                          "cells => cells.map(c => c.firstChild.textContent)")
        return services_in_waterfall(page) >= HOPS and f"job {rule_id}" in names

    try:
        wait_for(complete, timeout_s, "every hop's span on the trace view")
    except AssertionError as exc:
        raise AssertionError(f"{exc}: shown {sorted(services_in_waterfall(page))}") from exc


def test_console_submits_follows_the_job_and_shows_the_whole_trace(
        lab_chain, console_url, browser_context):
    tenant = lab_chain.tenant()
    rule_id = add_rule(lab_chain, tenant)
    time.sleep(2)  # the worker follows trigger_rules from its topic: let it see the rule
    browser_context.grant_permissions(["clipboard-read", "clipboard-write"], origin=console_url)
    page = browser_context.new_page()
    sent_headers = record_traceparents(page)
    page.goto(f"{console_url}/console/")
    assert page.inner_text("main h2") == "Sign in"
    sign_in(page, make_token(lab_chain.database_url, tenant))
    assert page.inner_text("#tenant-shown") == tenant
    page.reload()  # the credential stays for this tab (sessionStorage)
    page.wait_for_selector("#tenant-shown")
    assert page.inner_text("#tenant-shown") == tenant
    assert page.evaluate("document.cookie") == ""  # nothing the browser sends by itself
    page.evaluate("window.__notReloaded = true")
    # focus order by Tab follows the page: skip link, home, sign-in box, views, the form
    stops = []
    for _ in range(7):
        page.keyboard.press("Tab")
        stops.append(page.evaluate("(e => e.id || e.className || e.textContent.trim())"
                                   "(document.activeElement)"))
    assert stops == ["skip-link", "labstream lab console", "token-input", "Sign in",
                     "Experiments", "kind", "title"], stops

    # 1. submit by mouse: the page makes the traceparent, the API continues it
    page.get_by_label("Kind").select_option("hplc")
    page.get_by_label("Title").fill("Caffeine assay, batch 7")
    page.get_by_label("Submitted by").fill("ada")
    page.get_by_label("Protocol parameters (JSON object)").fill('{"injection_ul": 10}')
    page.get_by_role("button", name="Submit experiment").click()
    experiment_id, trace_id, sent = submitted(page, sent_headers)
    assert re.fullmatch(r"[0-9a-f]{32}", trace_id)
    assert re.fullmatch(rf"00-{trace_id}-[0-9a-f]{{16}}-01", sent), sent

    # 2. the list updates itself until the job has finished
    row = f'tr[data-experiment="{experiment_id}"]'
    page.wait_for_selector(f"{row} .jobs .badge-succeeded", timeout=120_000)
    job_text = page.inner_text(f"{row} .jobs li")
    assert rule_id in job_text and "local" in job_text and re.search(r"\d+(\.\d)? (s|ms)", job_text)
    assert page.inner_text(f"{row} td:nth-child(5)").startswith(trace_id[:8])

    # 2b. a second experiment, by keyboard only, whose job fails with exit code 2
    page.focus("#kind")
    for press, text in (("Tab", "Failing assay"), ("Tab", "grace"), ("Tab", None),
                        ("Tab", '{"fail": true}'), ("Tab", None)):
        page.keyboard.press(press)
        if text is not None:
            page.keyboard.press("Control+a")
            page.keyboard.type(text)
    focused = page.evaluate("[document.activeElement.id, "
                            "getComputedStyle(document.activeElement).outlineStyle]")
    assert focused[0] == "submit-button" and focused[1] != "none", focused
    page.keyboard.press("Enter")
    wait_js(page, f"document.querySelector('#submitted-experiment')?.textContent "
                           f"!== {json.dumps(experiment_id)}")
    failed_experiment, failed_trace, failed_sent = submitted(page, sent_headers)
    assert failed_sent.split("-")[1] == failed_trace
    failed_row = f'tr[data-experiment="{failed_experiment}"]'
    page.wait_for_selector(f"{failed_row} .jobs .badge-failed", timeout=120_000)
    assert page.evaluate("window.__notReloaded") is True  # live updates, no reload
    assert "null" not in page.inner_text("#submit-result")
    page.screenshot(path=str(SCREENSHOTS / "console-experiments.png"), full_page=True)

    # 3. job view of the succeeded job: log lines, exit status, replay command copied
    page.click(f"{row} .jobs a")
    page.wait_for_selector("#job-exit-code")
    assert page.inner_text("#job-exit-code") == "0"
    wait_js(page, "document.querySelectorAll('#job-log li').length >= 2")
    log_text = page.inner_text("#job-log")
    assert f"summarising {experiment_id}" in log_text and "purity_pct=97.1" in log_text
    replay = page.input_value("#replay-execute")
    assert re.fullmatch(rf"labstream replay run --offsets {lab_chain.name}\.public\.experiments"
                        r":0:\d+ --execute --rerun-succeeded", replay), replay
    page.get_by_role("button", name="Copy the re-drive command").click()
    wait_js(page, "document.getElementById('status').textContent.startsWith('Copied')")
    assert page.evaluate("navigator.clipboard.readText()") == replay
    # the dry-run command, as shown, runs and finds the record that fired our rule
    dry_run = page.input_value("#replay-dry-run")
    done = subprocess.run(
        [sys.executable, "-m", "labstream.cli", *shlex.split(dry_run)[1:], "--json"],
        env={**os.environ, **lab_chain.tracing_env(), **lab_chain.cdc_env(),
             **lab_chain.worker_env()}, capture_output=True, text=True, timeout=180, cwd=REPO,
        check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    [outcome] = [json.loads(line) for line in done.stdout.splitlines() if experiment_id in line]
    assert [(d["rule_id"], d["outcome"]) for d in outcome["now"]] == [(rule_id, "fired")], outcome
    # the job succeeded, which is why the re-drive command says --rerun-succeeded
    assert "--rerun-succeeded" in outcome["now"][0]["launch"]

    # 4. trace view: the page's trace id, a span from every hop, and the verdict in words
    page.click("a[href^='#/traces/']")
    assert page.inner_text("#trace-id") == trace_id
    wait_for_trace(page, rule_id)
    wait_js(page, "document.getElementById('verdict-headline').textContent"
                           ".startsWith('the job succeeded')", timeout_s=60)
    root = page.eval_on_selector("#waterfall tbody tr", "r => r.dataset.service")
    assert root == "labstream-console"
    page.screenshot(path=str(SCREENSHOTS / "console-trace.png"), full_page=True)

    # the failed job: its view and its trace, errors highlighted, verdict with the exit code
    page.goto(f"{console_url}/console/#/")
    page.click(f"{failed_row} .jobs a")
    page.wait_for_selector("#job-exit-code")
    assert page.inner_text("#job-exit-code") == "2"
    wait_js(page, "[...document.querySelectorAll('#job-log li')].some("
                           "li => li.textContent.includes('not calibrated'))")
    page.screenshot(path=str(SCREENSHOTS / "console-job.png"), full_page=True)
    page.click("a[href^='#/traces/']")
    assert page.inner_text("#trace-id") == failed_trace
    wait_for_trace(page, rule_id)
    wait_js(page, "document.getElementById('verdict-headline').textContent"
                           ".startsWith('the job failed: exit code 2')", timeout_s=60)
    assert "column C18 is not calibrated" in page.inner_text("#verdict-headline")
    assert page.query_selector("#waterfall tr.span-error") is not None
    page.screenshot(path=str(SCREENSHOTS / "console-trace-failed.png"), full_page=True)

    # narrow window: still one readable column
    page.set_viewport_size({"width": 400, "height": 800})
    page.goto(f"{console_url}/console/#/")
    page.wait_for_selector(f"{row} .jobs li")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 400, f"the page is {width}px wide in a 400px window"
    job_box = page.eval_on_selector(f"{row} .jobs li", "e => e.getBoundingClientRect().right")
    assert job_box <= 400, "the jobs of an experiment are off screen in a narrow window"
    page.screenshot(path=str(SCREENSHOTS / "console-narrow.png"), full_page=True)
    page.close()


def test_console_shows_nothing_of_another_tenant(lab_chain, console_url, browser_context):
    owner, other = lab_chain.tenant(), lab_chain.tenant()
    job_id = f"job-{owner}"
    execute(lab_chain.database_url, "INSERT INTO public.jobs (id, job_key, rule_id, tenant_id, "
            "backend, status) VALUES (%s, %s, 'r-staged', %s, 'local', 'queued')",
            (job_id, job_id, owner))
    page = browser_context.new_page()
    page.goto(f"{console_url}/console/#/jobs/{job_id}")
    assert page.inner_text("main h2") == "Sign in"  # a new tab: not signed in
    # a wrong token is refused and nothing is kept
    sign_in_attempt = "lst_0000000000000000_" + "x" * 43
    page.focus("#token-input")
    page.keyboard.type(sign_in_attempt)
    page.keyboard.press("Enter")
    wait_js(page, "document.getElementById('status').textContent.includes('invalid')")
    assert page.evaluate("sessionStorage.getItem('labstream.token')") is None
    sign_in(page, make_token(lab_chain.database_url, other))
    wait_js(page, "document.getElementById('status').textContent.includes('no job')")
    assert page.query_selector("#job-summary dl") is None
    # signed in with the owner's token, by keyboard: the owner sees the same job
    sign_in(page, make_token(lab_chain.database_url, owner))
    page.wait_for_selector("#job-summary dl")
    assert page.inner_text("#tenant-shown") == owner
    assert "r-staged" in page.inner_text("#job-summary")
    page.close()
