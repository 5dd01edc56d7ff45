// Small DOM helpers: elements from data with textContent only (no HTML from the API).

export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") node.className = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name === "style") Object.assign(node.style, value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function formatDuration(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
  if (seconds < 120) return `${seconds.toFixed(1)} s`;
  return `${Math.floor(seconds / 60)} min ${Math.round(seconds % 60)} s`;
}

export function formatNs(nanoseconds) {
  if (nanoseconds === 0) return "0 ms";
  if (nanoseconds < 1e6) return `${(nanoseconds / 1e3).toFixed(0)} µs`;
  if (nanoseconds < 1e9) return `${(nanoseconds / 1e6).toFixed(1)} ms`;
  return `${(nanoseconds / 1e9).toFixed(2)} s`;
}

export function formatTime(iso) {
  if (!iso) return "–";
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? iso : date.toLocaleString();
}

export function statusBadge(status) {
  return el("span", { class: `badge badge-${status}` }, status || "–");
}

// Replace a container's content, keeping keyboard focus on the element with the same
// data-focus-key (live updates must not throw a keyboard user back to the top).
export function replaceKeepingFocus(container, ...children) {
  const focused = document.activeElement;
  const key = focused && container.contains(focused) ? focused.dataset.focusKey : null;
  container.replaceChildren(...children);
  if (key) {
    const again = container.querySelector(`[data-focus-key="${CSS.escape(key)}"]`);
    if (again) again.focus();
  }
}

export async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    // clipboard API refused (permissions, old browser): the selection fallback
    const area = el("textarea", { readonly: true, style: { position: "fixed", opacity: "0" } }, text);
    document.body.append(area);
    area.select();
    const copied = document.execCommand("copy");
    area.remove();
    return copied;
  }
}

// "14:03:27" for a time in ms (the stale line, log timestamps)
export function formatClock(ms) {
  if (ms === null || ms === undefined) return "–";
  return new Date(ms).toLocaleTimeString([], { hour12: false });
}

// Every id on the page is a link to its own view.
export function idLink(kind, id, attributes = {}) {
  if (!id) return "–";
  const path = { experiment: "experiments", job: "jobs", trace: "traces" }[kind];
  return el("a", { href: `#/${path}/${encodeURIComponent(id)}`, class: "mono", ...attributes }, id);
}

// The view's loading / empty / not-found / error states, one look for all of them.
export function stateNote(kind, text) {
  return el("p", { class: `state state-${kind}`, "data-state": kind }, text);
}

// replaceChildren without the trap: a null or false child would be written as "null"
export function fill(node, ...children) {
  node.replaceChildren(...children.flat().filter((child) => child !== null && child !== undefined && child !== false));
}
