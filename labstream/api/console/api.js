// The lab API as the page uses it: every request carries the signed-in credential
// (Authorization: Bearer). The credential lives in sessionStorage: this tab only,
// gone when the tab closes, never in a cookie the browser would send by itself.

const TOKEN_KEY = "labstream.token";
const TENANT_KEY = "labstream.tenant";
const ROLE_KEY = "labstream.role";

export class ApiError extends Error {
  constructor(status, message, hint) {
    super(message);
    this.status = status;
    this.hint = hint;
  }
}

// The tenant of the signed-in credential; an operator (who reads any tenant) names
// it with ?tenant=<id>.
export function currentTenant() {
  if (!sessionStorage.getItem(TOKEN_KEY)) return "";
  const fromUrl = new URLSearchParams(location.search).get("tenant");
  if (fromUrl && sessionStorage.getItem(ROLE_KEY) === "operator") {
    sessionStorage.setItem(TENANT_KEY, fromUrl.trim());
  }
  return sessionStorage.getItem(TENANT_KEY) || "";
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
  if (!token || !tenant) throw new ApiError(0, "sign in first", "paste your API token at the top (labstream tokens create)");
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
    throw new ApiError(0, `the lab API did not answer (${error.message})`, "is `labstream api` running?");
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
    throw new ApiError(response.status, (data && data.error) || response.statusText, data && data.hint);
  }
  return { data, headers: response.headers, status: response.status };
}

export const get = (path) => request("GET", path).then((r) => r.data);
