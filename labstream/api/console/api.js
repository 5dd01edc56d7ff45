// The lab API as the page uses it: every request carries X-Lab-Tenant.

const TENANT_KEY = "labstream.tenant";

export class ApiError extends Error {
  constructor(status, message, hint) {
    super(message);
    this.status = status;
    this.hint = hint;
  }
}

// ?tenant=<id> in the address wins and is kept in sessionStorage for this tab.
export function currentTenant() {
  const fromUrl = new URLSearchParams(location.search).get("tenant");
  if (fromUrl) sessionStorage.setItem(TENANT_KEY, fromUrl.trim());
  return sessionStorage.getItem(TENANT_KEY) || "";
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
  if (!tenant) throw new ApiError(0, "choose a tenant first", "type your tenant id at the top");
  const init = { method, headers: { "X-Lab-Tenant": tenant, ...headers } };
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
  if (!response.ok) {
    throw new ApiError(response.status, (data && data.error) || response.statusText, data && data.hint);
  }
  return { data, headers: response.headers, status: response.status };
}

export const get = (path) => request("GET", path).then((r) => r.data);
