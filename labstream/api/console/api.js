// The lab API as the page uses it: every request carries the signed-in credential
// (Authorization: Bearer). The credential lives in sessionStorage: this tab only,
// gone when the tab closes, never in a cookie the browser would send by itself.
// `request` is the ONE place the page talks to the API: every call goes through it (it
// adds the credential, and tracks whether the API answers).

const TOKEN_KEY = "labstream.token";
const TENANT_KEY = "labstream.tenant";
const ROLE_KEY = "labstream.role";
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

// The tenant of the signed-in credential; an operator (who reads any tenant) names
// it with ?tenant=<id>.
export function currentTenant() {
  if (!sessionStorage.getItem(TOKEN_KEY)) return "";
  const fromUrl = new URLSearchParams(location.search).get("tenant");
  if (fromUrl && sessionStorage.getItem(ROLE_KEY) === "operator") {
    sessionStorage.setItem(TENANT_KEY, fromUrl.trim());
  }
  const stored = sessionStorage.getItem(TENANT_KEY);
  return stored && stored !== "null" ? stored : "";
}

// Check the token with the API (GET /auth/whoami), then keep it for this tab.
export async function signIn(token) {
  const credential = token.trim();
  const response = await fetch("/auth/whoami", { headers: { Authorization: `Bearer ${credential}` } });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new ApiError(response.status, data.error || response.statusText, data.hint);
  sessionStorage.setItem(TOKEN_KEY, credential);
  sessionStorage.setItem(ROLE_KEY, data.role);
  sessionStorage.setItem(TENANT_KEY, data.tenant_id || "");
  return data;
}

export function signOut() {
  for (const key of [TOKEN_KEY, TENANT_KEY, ROLE_KEY]) sessionStorage.removeItem(key);
}

export async function request(method, path, { body, headers = {} } = {}) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  const tenant = currentTenant();
  if (!token || !tenant) throw new ApiError(401, "sign in first", "paste your API token at the top (labstream tokens create)");
  const init = { method, headers: { Authorization: `Bearer ${token}`, ...headers } };
  if (sessionStorage.getItem(ROLE_KEY) === "operator") init.headers["X-Lab-Tenant"] = tenant;
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
  if (response.status === 401) signOut(); // revoked or expired: ask for a new one
  if (!response.ok) {
    const failure = new ApiError(response.status, (data && data.error) || response.statusText, data && data.hint);
    setHealth(!failure.unreachable, failure.unreachable ? failure : null);
    throw failure;
  }
  setHealth(true);
  return { data, headers: response.headers, status: response.status };
}

export const get = (path) => request("GET", path).then((r) => r.data);
