// The lab API as the page uses it. `request` is the ONE place the page talks to the API:
// every call goes through it (it adds who is asking, and tracks whether the API answers).

const TENANT_KEY = "labstream.tenant";
// answers after which asking again cannot help: the view shows them and stops polling
export const FINAL_STATUSES = new Set([400, 401, 403, 404, 410, 422]);

export class ApiError extends Error {
  constructor(status, message, hint) {
    super(message);
    this.status = status;
    this.hint = hint;
  }

  // the request never got an answer from the API (network, or a proxy saying it is gone)
  get unreachable() {
    return this.status === 0 || this.status === 502 || this.status === 503 || this.status === 504;
  }

  get final() {
    return FINAL_STATUSES.has(this.status);
  }
}

// Whether the API answers: {ok, lastGoodAt (ms), downSince (ms), error}. Listeners get
// every change, so the page can say "stale since ..." and clear it when the API is back.
const health = { ok: true, lastGoodAt: null, downSince: null, error: null };
const listeners = new Set();

export function onApiHealth(listener) {
  listeners.add(listener);
  listener({ ...health });
  return () => listeners.delete(listener);
}

function setHealth(ok, error = null) {
  const changed = ok !== health.ok;
  if (ok) {
    health.lastGoodAt = Date.now();
    health.downSince = null;
  } else if (health.downSince === null) {
    health.downSince = Date.now();
  }
  health.ok = ok;
  health.error = error;
  if (changed) for (const listener of listeners) listener({ ...health });
}

// ?tenant=<id> in the address wins and is kept in sessionStorage for this tab.
export function currentTenant() {
  const fromUrl = new URLSearchParams(location.search).get("tenant");
  if (fromUrl && fromUrl.trim()) sessionStorage.setItem(TENANT_KEY, fromUrl.trim());
  const stored = sessionStorage.getItem(TENANT_KEY);
  return stored && stored !== "null" ? stored : "";
}

// The picker's choice; ?tenant= leaves the address so that it does not win again.
export function setTenant(tenant) {
  sessionStorage.setItem(TENANT_KEY, tenant.trim());
  const url = new URL(location.href);
  if (url.searchParams.has("tenant")) {
    url.searchParams.delete("tenant");
    history.replaceState(null, "", url);
  }
}

export async function request(method, path, { body, headers = {} } = {}) {
  const tenant = currentTenant();
  if (!tenant) throw new ApiError(400, "choose a tenant first", "type your tenant id at the top");
  const init = { method, headers: { "X-Lab-Tenant": tenant, ...headers } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (error) {
    const failure = new ApiError(0, `the lab API did not answer (${error.message})`, "is `labstream api` running?");
    setHealth(false, failure);
    throw failure;
  }
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = { error: text };
  }
  if (!response.ok) {
    const failure = new ApiError(response.status, (data && data.error) || response.statusText, data && data.hint);
    setHealth(!failure.unreachable, failure.unreachable ? failure : null);
    throw failure;
  }
  setHealth(true);
  return { data, headers: response.headers, status: response.status };
}

export const get = (path) => request("GET", path).then((r) => r.data);
