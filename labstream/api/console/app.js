// The lab console: sign-in, hash router (#/, #/jobs/<id>, #/traces/<id>), polling.

import { currentTenant, signIn } from "./api.js";
import { el } from "./dom.js";
import { experimentsView } from "./experiments.js";
import { jobView } from "./job.js";
import { traceView } from "./trace.js";

const main = document.getElementById("main");
const statusLine = document.getElementById("status");
const crumbs = document.getElementById("crumbs");
let stopPolling = () => {};

function announce(message, level = "info") {
  statusLine.textContent = message;
  statusLine.className = `status status-${level}`;
}

// Run `task` now and every `intervalMs` until the view changes or it returns "stop";
// paused while the tab is hidden. Errors are shown, and polling goes on.
function poller() {
  let timer = null;
  let stopped = false;
  stopPolling();
  stopPolling = () => {
    stopped = true;
    clearTimeout(timer);
  };
  return (task, intervalMs) => {
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
        announce(`${error.message}${error.hint ? ` (${error.hint})` : ""}`, "error");
      }
      if (!stopped && outcome !== "stop") timer = setTimeout(tick, intervalMs);
    };
    tick();
  };
}

function route() {
  const tenant = currentTenant();
  const [, view, id] = location.hash.replace(/^#\/?/, "/").split("/");
  const context = { announce, poll: poller() };
  const trail = [el("a", { href: "#/" }, "Experiments")];
  if (!tenant) {
    main.replaceChildren(el("h2", {}, "Sign in"),
      el("p", {}, "Paste your API token at the top and press “Sign in” (make one with `labstream tokens create`). It is kept for this tab only."));
    document.getElementById("token-input").focus();
  } else if (view === "jobs" && id) {
    trail.push(el("span", { "aria-current": "page" }, `Job ${decodeURIComponent(id)}`));
    jobView(main, decodeURIComponent(id), context);
  } else if (view === "traces" && id) {
    trail.push(el("span", { "aria-current": "page" }, `Trace ${id}`));
    traceView(main, id.toLowerCase(), context);
  } else {
    experimentsView(main, context);
  }
  crumbs.replaceChildren(el("ol", {}, trail.map((item) => el("li", {}, item))),
    tenant ? el("p", { class: "tenant-shown" }, "Tenant: ", el("strong", { id: "tenant-shown" }, tenant)) : null);
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
