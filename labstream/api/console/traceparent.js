// W3C trace context made in the browser: the true front-end start of a trace.
// https://www.w3.org/TR/trace-context/#traceparent-header

const ZERO = /^0+$/;

function hex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function randomHex(byteCount, random) {
  // an all-zero id is invalid: draw again (practically never happens)
  for (;;) {
    const bytes = new Uint8Array(byteCount);
    random(bytes);
    const value = hex(bytes);
    if (!ZERO.test(value)) return value;
  }
}

// `random` fills a Uint8Array; crypto.getRandomValues by default, injectable for tests.
export function newTraceContext(random = (bytes) => crypto.getRandomValues(bytes)) {
  const traceId = randomHex(16, random);
  const spanId = randomHex(8, random);
  return { traceId, spanId, traceparent: `00-${traceId}-${spanId}-01` };
}

export function traceIdOf(traceparent) {
  const match = /^00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$/.exec(traceparent || "");
  return match ? match[1] : null;
}
