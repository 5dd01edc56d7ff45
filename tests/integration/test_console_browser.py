"""The lab console in headless Chromium, on the whole chain.

`labstream api` (serving the page), the CDC connector and the stream worker run as
subprocesses with names of their own (`explain_helpers.chain`). On the page, by mouse
and by keyboard, two experiments are submitted with a traceparent made in the
browser; a rule on `experiment.submitted` runs a small Python job that succeeds for
the first and exits 2 for the second. The test waits on the page (no reload) for the
jobs to finish, reads the job view (log lines, exit code, replay command copied), and
finds on the trace view the trace id the page made, with a span from every hop: the
page, the API, CDC, the worker's agents, the job runner and the job itself, plus the
`explain` verdict in words. On the way it searches (by id, by a filter in a deep link,
the jobs list), opens the experiment page, uses the CI-style log (times, attempts,
search, download, a line link), runs the dry run from the page, re-drives the failed
job behind the confirmation (consent stored, attempt 2, commands on the original
record, the replay linked from the original trace), opens span details, collapses and
zooms the waterfall and reads the views on a 390 px phone. Two more tests stop and
restart the API under an open page (stale line, then cleared) and check that final
answers (unknown tenant, job, trace, route) are shown once and stop the polling.
Screenshots of each view go to test-artifacts/ (docs/screenshots/ with `make screenshots`).

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
from playwright.sync_api import Page

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
        names = page.eval_on_selector_all("#waterfall .span-open",
                                          "cells => cells.map(c => c.textContent)")
        return services_in_waterfall(page) >= HOPS and f"job {rule_id}" in names

    try:
        wait_for(complete, timeout_s, "every hop's span on the trace view")
    except AssertionError as exc:
        raise AssertionError(f"{exc}: shown {sorted(services_in_waterfall(page))}") from exc


def test_console_submits_follows_the_job_and_shows_the_whole_trace(
        lab_chain, console_url, browser_context):
    tenant = lab_chain.tenant()
    rule_id = add_rule(lab_chain, tenant)
    lab_chain.wait_until_worker_loaded(rule_id)  # it follows trigger_rules from its topic
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
    for _ in range(8):
        page.keyboard.press("Tab")
        stops.append(page.evaluate("(e => e.id || e.className || e.textContent.trim())"
                                   "(document.activeElement)"))
    assert stops == ["skip-link", "labstream lab console", "token-input", "Sign in",
                     "Experiments", "Jobs", "kind", "title"], stops
    assert page.title() == "Experiments · labstream console"

    # 1. submit by mouse: the page makes the traceparent, the API continues it
    form = page.get_by_role("form", name="Submit an experiment")
    form.get_by_label("Kind").select_option("hplc")
    form.get_by_label("Title").fill("Caffeine assay, batch 7")
    form.get_by_label("Submitted by").fill("ada")
    form.get_by_label("Protocol parameters (JSON object)").fill('{"injection_ul": 10}')
    form.get_by_role("button", name="Submit experiment").click()
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

    # 2c. search (server-side): by the failed experiment's id, then a deep link by job status
    page.fill("#filter-q", failed_experiment)
    page.click("#filter-apply")
    wait_js(page, "document.querySelectorAll('#experiments-list tr[data-experiment]')"
                  f".length === 1 && !!document.querySelector('{failed_row}')")
    assert f"q={failed_experiment}" in page.evaluate("location.hash")
    assert page.title().startswith(f"Experiments: q={failed_experiment}")
    page.goto(f"{console_url}/console/#/?job_status=failed")
    page.wait_for_selector(failed_row)
    assert page.query_selector(row) is None  # its job succeeded
    assert page.eval_on_selector("#filter-job_status", "s => s.value") == "failed"
    page.goto(f"{console_url}/console/#/?q=no-such-experiment-{rule_id}")
    page.wait_for_selector("#experiments-list [data-state=empty]")
    assert "match these filters" in page.inner_text("#experiments-list")
    # the jobs list finds the failed job by its rule and status
    page.goto(f"{console_url}/console/#/jobs?rule={rule_id}&status=failed")
    page.wait_for_selector("#jobs-list tr[data-job]")
    assert page.eval_on_selector_all("#jobs-list tr[data-job]", "r => r.length") == 1

    # 2d. the experiment page: jobs, the submission's trace, the verdict, ids as links
    page.goto(f"{console_url}/console/#/experiments/{experiment_id}")
    page.wait_for_selector("#experiment-jobs a[href^='#/jobs/']")
    assert page.title() == f"Experiment {experiment_id} · labstream console"
    page.wait_for_selector(f"#experiment-traces li[data-trace='{trace_id}']", timeout=60_000)
    wait_js(page, "document.getElementById('verdict-headline').textContent"
                  ".startsWith('the job succeeded')", timeout_s=60)
    page.screenshot(path=str(SCREENSHOTS / "console-experiment.png"), full_page=True)
    page.goto(f"{console_url}/console/#/")
    page.wait_for_selector(f"{row} .jobs .badge-succeeded")

    # 3. job view of the succeeded job: log lines, exit status, replay command copied
    page.click(f"{row} .jobs a")
    page.wait_for_selector("#job-exit-code")
    assert page.inner_text("#job-exit-code") == "0"
    wait_js(page, "document.querySelectorAll('#job-log li').length >= 2")
    log_text = page.inner_text("#job-log")
    assert f"summarising {experiment_id}" in log_text and "purity_pct=97.1" in log_text
    # CI-log features: a time per line, attempts as sections, search, download, line links
    assert page.eval_on_selector_all("#job-log .log-time", "t => t.every(e => e.dateTime)")
    assert page.inner_text("#job-log .log-section-heading").startswith("Attempt 1")
    page.fill("#log-search", "purity")
    assert page.inner_text("#log-matches") == "1 matching line(s)"
    assert page.eval_on_selector_all("#job-log li.log-line:not([hidden])", "l => l.length") == 1
    page.fill("#log-search", "")
    with page.expect_download() as download_info:
        page.click("#log-download")
    downloaded = Path(download_info.value.path()).read_text()
    assert "purity_pct=97.1" in downloaded and downloaded.count("\n") >= 2
    job_id = page.evaluate("location.hash").split("/")[-1]
    page.goto(f"{console_url}/console/#/jobs/{job_id}?line=1")
    page.wait_for_selector("#L1.log-wanted")
    assert page.title() == f"Job {job_id} · succeeded · labstream console"
    replay = page.input_value("#replay-execute")
    assert re.fullmatch(rf"labstream replay run --offsets {lab_chain.name}\.public\.experiments"
                        r":\d+:\d+ --execute --rerun-succeeded", replay), replay  # any partition
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
    # the same dry run from the page: then (the decision recorded) vs now, as a table
    page.click("#replay-dry-run-here")
    page.wait_for_selector("#dry-run-table tbody tr", timeout=120_000)
    dry_row = page.inner_text("#dry-run-table tbody tr")
    assert f"fires rule {rule_id}" in dry_row and "already succeeded" in dry_row, dry_row
    assert "same" in dry_row  # the rule fired then and would fire now
    page.screenshot(path=str(SCREENSHOTS / "console-dry-run.png"), full_page=True)

    # 4. trace view: the page's trace id, a span from every hop, and the verdict in words
    page.click("a[href^='#/traces/']")
    assert page.inner_text("#trace-id") == trace_id
    wait_for_trace(page, rule_id)
    wait_js(page, "document.getElementById('verdict-headline').textContent"
                           ".startsWith('the job succeeded')", timeout_s=60)
    root = page.eval_on_selector("#waterfall tbody tr", "r => r.dataset.service")
    assert root == "labstream-console"
    # what the trace leads to: the experiment and the job, as links
    page.wait_for_selector(f"#related a[href='#/experiments/{experiment_id}']")
    # span details on click (ids as links), collapse the tree, zoom into a span
    page.click("#waterfall tbody tr:first-child .span-open")
    details = page.wait_for_selector(".span-details")
    assert details.query_selector(f"a[href='#/experiments/{experiment_id}']") is not None
    rows_before = page.eval_on_selector_all("#waterfall tr[data-span]", "r => r.length")
    page.click("#waterfall tbody tr:first-child .tree-toggle")
    assert page.eval_on_selector_all("#waterfall tr[data-span]", "r => r.length") == 1
    page.click("#waterfall tbody tr:first-child .tree-toggle")
    assert page.eval_on_selector_all("#waterfall tr[data-span]", "r => r.length") == rows_before
    page.click(".span-details .zoom")
    page.wait_for_selector("#zoom-note")
    page.click("#zoom-reset")
    page.screenshot(path=str(SCREENSHOTS / "console-trace.png"), full_page=True)
    # a phone, 390 px wide: the trace reads without sideways scrolling
    page.set_viewport_size({"width": 390, "height": 844})
    width = page.evaluate("document.documentElement.scrollWidth")
    wide = page.evaluate("[...document.querySelectorAll('body *')].filter(e => "
                         "e.getBoundingClientRect().right > 391).slice(-5).map(e => "
                         "e.tagName + '.' + e.className + '#' + e.id + ' ' + "
                         "Math.round(e.getBoundingClientRect().right))")
    assert width <= 390, f"the trace view is {width}px wide on a 390px phone: {wide}"
    page.screenshot(path=str(SCREENSHOTS / "console-trace-phone.png"), full_page=True)
    for view, ready in ((f"#/experiments/{experiment_id}", "#experiment-jobs"),
                        (f"#/jobs/{job_id}", "#job-log .log-line")):
        page.goto(f"{console_url}/console/{view}")
        page.wait_for_selector(ready)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"{view} is {width}px wide on a 390px phone"
    page.set_viewport_size({"width": 1280, "height": 800})

    # the failed job: its view and its trace, errors highlighted, verdict with the exit code
    page.goto(f"{console_url}/console/#/")
    page.click(f"{failed_row} .jobs a")
    page.wait_for_selector("#job-exit-code")
    assert page.inner_text("#job-exit-code") == "2"
    wait_js(page, "[...document.querySelectorAll('#job-log li')].some("
                           "li => li.textContent.includes('not calibrated'))")
    page.screenshot(path=str(SCREENSHOTS / "console-job.png"), full_page=True)
    failed_job = page.evaluate("location.hash").split("/")[-1]
    original_dry_run = page.input_value("#replay-dry-run")

    page.click("#job-summary a[href^='#/traces/']")
    assert page.inner_text("#trace-id") == failed_trace
    wait_for_trace(page, rule_id)
    wait_js(page, "document.getElementById('verdict-headline').textContent"
                           ".startsWith('the job failed: exit code 2')", timeout_s=60)
    assert "column C18 is not calibrated" in page.inner_text("#verdict-headline")
    assert page.query_selector("#waterfall tr.span-error") is not None
    page.screenshot(path=str(SCREENSHOTS / "console-trace-failed.png"), full_page=True)

    # re-drive the failed job from the page: a confirmation, the consent stored, attempt 2
    page.goto(f"{console_url}/console/#/jobs/{failed_job}")
    page.wait_for_selector("#replay-execute-open")
    page.click("#replay-execute-open")
    page.fill("#confirm-job-id", "job-not-this-one")
    page.fill("#consented-by", "grace")
    page.click("#replay-execute-confirm")
    wait_js(page, "document.getElementById('status').textContent"
                  ".startsWith('Type the job id')")
    page.fill("#confirm-job-id", failed_job)
    page.click("#replay-execute-confirm")
    page.wait_for_selector("#replay-result", timeout=120_000)
    assert "produced 1 record(s)" in page.inner_text("#replay-result")
    [consent] = execute(lab_chain.database_url, "SELECT consented_by, status, replay_id FROM "
                        "labstream.console_replay_consents WHERE job_id = %s", (failed_job,))
    assert consent[:2] == ("grace", "succeeded") and consent[2].startswith("rp-")
    # the page follows the new attempt: a second log section, and the commands stay on the
    # original record (the jobs row now names the replayed copy)
    page.wait_for_selector("#job-log .log-section[data-attempt='2']", timeout=120_000)
    page.wait_for_selector("#job-replayed-from", timeout=60_000)
    assert page.input_value("#replay-dry-run") == original_dry_run
    page.screenshot(path=str(SCREENSHOTS / "console-job-redriven.png"), full_page=True)
    # its trace shows the replay span, linked to the original trace: a link back
    page.goto(f"{console_url}/console/#/traces/{failed_trace}")
    page.wait_for_selector("#linking-spans li", timeout=60_000)
    # the experiment page lists both attempts of the job, each with its own trace
    page.goto(f"{console_url}/console/#/experiments/{failed_experiment}")
    attempts = f"[data-job-attempts='{failed_job}'] li"
    wait_js(page, f"document.querySelectorAll(\"{attempts}\").length === 2", timeout_s=60)
    assert "exit 2" in page.inner_text(f"{attempts}[data-attempt='2']")

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


def api_requests(page: Page, fragment: str) -> list[str]:
    """URLs of the API requests the page makes whose path holds `fragment`."""
    seen: list[str] = []
    page.on("request", lambda request: seen.append(request.url) if fragment in request.url
            else None)
    return seen


def assert_polling_stopped(page: Page, seen: list[str], settle_s: float = 4) -> None:
    """After a final answer the page asks no more: no request in `settle_s` seconds."""
    before = len(seen)
    page.wait_for_timeout(settle_s * 1000)  # the page's own clock: nothing must happen
    assert len(seen) == before, f"the page kept polling: {seen[before:]}"


def test_console_final_answers_stop_polling_and_unknown_routes_say_not_found(
        lab_chain, console_url, browser_context):
    tenant = lab_chain.tenant()
    page = browser_context.new_page()
    # not signed in: a question, not "null"
    page.goto(f"{console_url}/console/")
    page.evaluate("sessionStorage.clear()")
    page.reload()
    page.wait_for_selector("main h2:text('Sign in')")
    assert "null" not in page.inner_text("body") and page.title().startswith("Sign in")
    # an operator naming an unknown tenant: 404 once, said, then no more requests
    sign_in(page, make_token(lab_chain.database_url, None, "operator"))
    seen = api_requests(page, "/experiments")
    page.goto(f"{console_url}/console/?tenant=no-such-tenant-{tenant}#/")
    page.wait_for_selector("#experiments-list [data-state=error]")
    assert "no tenant" in page.inner_text("#experiments-list")
    assert_polling_stopped(page, seen)
    # a scientist of the tenant from here on
    sign_in(page, make_token(lab_chain.database_url, tenant))
    # unknown routes show not found, with a title of their own
    page.goto(f"{console_url}/console/#/nowhere/at/all")
    page.wait_for_selector("#not-found")
    assert page.title() == "Not found · labstream console"
    # an unknown job: not found at once; an unknown trace: after its grace period
    seen_jobs = api_requests(page, "/jobs/")
    page.goto(f"{console_url}/console/#/jobs/job-missing-{tenant}")
    page.wait_for_selector("#job-summary [data-state=not-found]")
    assert page.title() == "Job not found · labstream console"
    assert_polling_stopped(page, seen_jobs)
    missing_trace = "ab" * 16
    seen_traces = api_requests(page, f"/traces/{missing_trace}")
    page.goto(f"{console_url}/console/#/traces/{missing_trace}")
    page.wait_for_selector("#waterfall [data-state=not-found]", timeout=40_000)
    assert page.title() == "Trace not found · labstream console"
    assert_polling_stopped(page, seen_traces)
    page.goto(f"{console_url}/console/#/traces/not-a-trace")
    page.wait_for_selector("[data-state=not-found]")
    # the favicon exists (no 404 on every load)
    assert page.request.get(f"{console_url}/console/favicon.svg").status == 200
    page.close()


def test_console_says_when_the_api_is_away_and_clears_it_when_it_is_back(
        lab_chain, browser_context):
    tenant = lab_chain.tenant()
    experiment = f"exp-{tenant}"
    execute(lab_chain.database_url, "INSERT INTO public.experiments (id, tenant_id, kind, "
            "submitted_by) VALUES (%s, %s, 'hplc', 'ada')", (experiment, tenant))
    port = free_port()
    base = f"http://127.0.0.1:{port}"

    def start_api(name: str) -> Any:
        process = lab_chain.start(name, ["api"], {"LABSTREAM_API_PORT": str(port)})

        def serving() -> bool:
            assert process.poll() is None, f"labstream api exited: {lab_chain.log(name)}"
            try:
                with urllib.request.urlopen(f"{base}/console/", timeout=2) as answer:
                    return bool(answer.status == 200)
            except OSError:
                return False

        wait_for(serving, 60, "labstream api to serve the console")
        return process

    api = start_api("api-away-1")
    page = browser_context.new_page()
    page.goto(f"{base}/console/")
    sign_in(page, make_token(lab_chain.database_url, tenant))
    page.goto(f"{base}/console/#/")
    page.wait_for_selector(f'tr[data-experiment="{experiment}"]')
    assert page.is_hidden("#api-health")
    api.terminate()
    api.wait(30)
    page.wait_for_selector("#api-health:not([hidden])", timeout=20_000)
    stale = page.inner_text("#api-health")
    assert "not answering" in stale and re.search(r"answered at \d\d:\d\d:\d\d", stale), stale
    # what it last said stays on the page, and a submission says why it failed, and stays
    assert page.query_selector(f'tr[data-experiment="{experiment}"]') is not None
    page.fill("#submitted-by", "ada")
    page.click("#submit-button")
    page.wait_for_selector("#submit-error")
    page.wait_for_timeout(3000)  # two list refreshes: the error must still be there
    assert page.inner_text("#submit-error").startswith("Not submitted")
    page.screenshot(path=str(SCREENSHOTS / "console-api-away.png"), full_page=True)
    start_api("api-away-2")
    page.wait_for_selector("#api-health", state="hidden", timeout=20_000)
    assert page.query_selector(f'tr[data-experiment="{experiment}"]') is not None
    page.close()
