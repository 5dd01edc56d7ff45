// The lab console: sign-in, hash router, polling, and the API's health.
//
// Routes (the view and its filters live in the address, so every state is a link):
//   #/?q=&status=&kind=&submitted_by=&rule=&job_status=&since=&until=&before=   experiments
//   #/jobs?...same filters...                                                 jobs
//   #/experiments/<id>   #/jobs/<id>[?line=<seq>]   #/traces/<id>              one thing

import { currentTenant, onApiHealth, signIn } from "./api.js";
import { el, formatClock } from "./dom.js";
import { experimentView } from "./experiment.js";
import { experimentsView, jobsView } from "./experiments.js";
import { jobView } from "./job.js";
import { traceView } from "./trace.js";

const main = document.getElementById("main");
const statusLine = document.getElementById("status");
const crumbs = document.getElementById("crumbs");
const healthLine = document.getElementById("api-health");
let stopPolling = () => {};

function announce(message, level = "info") {
  statusLine.textContent = message;
  statusLine.className = `status status-${level}`;
}

function setTitle(text) {
  document.title = `${text} · labstream console`;
}

// Stale, said once for the whole page: the views keep what the API last answered.
onApiHealth(({ ok, lastGoodAt, downSince, error }) => {
  if (ok) {
    healthLine.hidden = true;
    healthLine.replaceChildren();
    return;
  }
  const last = lastGoodAt ? `what it answered at ${formatClock(lastGoodAt)}` : "nothing yet";
  healthLine.hidden = false;
  healthLine.replaceChildren(
    el("strong", {}, "The lab API is not answering"),
    ` (since ${formatClock(downSince)}): this page shows ${last}, and asks again every few seconds. `,
    el("span", { class: "muted" }, error ? error.message : ""));
});

// Run `task` now and every `intervalMs` until the view changes, `task` returns "stop",
// or the API gives a final answer (400/403/404/422: asking again cannot change it),
// which `onFinal(error)` shows. While the API is unreachable the view keeps its content
// (the health line says it is stale) and polling goes on; paused while the tab is hidden.
function poller() {
  let timer = null;
  let stopped = false;
  stopPolling();
  stopPolling = () => {
    stopped = true;
    clearTimeout(timer);
  };
  return (task, intervalMs, onFinal = (error) => announce(error.message, "error")) => {
    const tick = async () => {
      if (stopped) return;
      if (document.hidden) {
        timer = setTimeout(tick, intervalMs);
        return;
      }
      let outcome;
      try {
        outcome = await task();
      } catch (error) {
        if (stopped) return;
        if (error.final) {
          onFinal(error);
          return;
        }
        if (!error.unreachable) announce(`${error.message}${error.hint ? ` (${error.hint})` : ""}`, "error");
      }
      if (!stopped && outcome !== "stop") timer = setTimeout(tick, intervalMs);
    };
    tick();
  };
}

export function parseHash(hash) {
  const [path, query = ""] = hash.replace(/^#/, "").split("?");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  return { parts, params: new URLSearchParams(query) };
}

function notFound(what) {
  setTitle("Not found");
  main.replaceChildren(el("h2", { id: "not-found" }, "Not found"),
    el("p", {}, `There is no page ${what} in the console. `, el("a", { href: "#/" }, "Go to the experiments"), "."));
}

function route() {
  const tenant = currentTenant();
  const { parts, params } = parseHash(location.hash);
  const context = { announce, poll: poller(), setTitle, params };
  const trail = [el("a", { href: "#/" }, "Experiments"), el("a", { href: "#/jobs" }, "Jobs")];
  const [view, id, ...rest] = parts;
  if (!tenant) {
    setTitle("Sign in");
    main.replaceChildren(el("h2", {}, "Sign in"),
      el("p", {}, "Paste your API token at the top and press “Sign in” (make one with `labstream tokens create`). It is kept for this tab only."));
    document.getElementById("token-input").focus();
  } else if (rest.length) {
    notFound(location.hash);
  } else if (view === undefined) {
    experimentsView(main, context);
  } else if (view === "jobs" && id === undefined) {
    jobsView(main, context);
  } else if (view === "jobs") {
    trail.push(el("span", { "aria-current": "page" }, `Job ${id}`));
    jobView(main, id, context);
  } else if (view === "experiments" && id !== undefined) {
    trail.push(el("span", { "aria-current": "page" }, `Experiment ${id}`));
    experimentView(main, id, context);
  } else if (view === "traces" && id !== undefined) {
    trail.push(el("span", { "aria-current": "page", title: id }, `Trace ${id.slice(0, 8)}…`));
    traceView(main, id.toLowerCase(), context);
  } else {
    notFound(location.hash);
  }
  // replaceChildren(null) would write the text "null": give it only nodes
  const shown = [el("ol", {}, trail.map((item) => el("li", {}, item)))];
  if (tenant) shown.push(el("p", { class: "tenant-shown" }, "Tenant: ", el("strong", { id: "tenant-shown" }, tenant)));
  crumbs.replaceChildren(...shown);
}

document.getElementById("sign-in-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const input = document.getElementById("token-input");
  try {
    const who = await signIn(input.value);
    input.value = "";
    announce(`Signed in as ${who.role}${who.tenant_id ? ` of tenant ${who.tenant_id}` : ""}`);
  } catch (error) {
    announce(`${error.message}${error.hint ? ` (${error.hint})` : ""}`, "error");
  }
  route();
});

window.addEventListener("hashchange", () => {
  announce("");
  route();
  main.focus();
});
route();
