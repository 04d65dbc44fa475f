// The console's only way to the server: the /v1 API with the bearer token from the login,
// kept in sessionStorage (gone when the tab closes; never in a URL or a cookie).

const KEY = "tribune.token";

export const token = {
  get: () => sessionStorage.getItem(KEY),
  set: (t) => sessionStorage.setItem(KEY, t),
  clear: () => sessionStorage.removeItem(KEY),
};

/** A problem document (RFC 9457) from the API, or a network failure. */
export class ApiError extends Error {
  constructor(status, problem) {
    super(problem?.detail || problem?.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem || {};
  }
}

function headers(extra) {
  const h = { Accept: "application/json", ...extra };
  const t = token.get();
  if (t) h.Authorization = `Bearer ${t}`;
  return h;
}

/** fetch + JSON; resolves to { body, etag, status }; rejects with ApiError. */
export async function call(method, path, { body, ifMatch, ifNoneMatch } = {}) {
  const extra = {};
  if (body !== undefined) extra["Content-Type"] = "application/json";
  if (ifMatch !== undefined) extra["If-Match"] = `"${ifMatch}"`;
  if (ifNoneMatch) extra["If-None-Match"] = "*";
  const r = await fetch(path, {
    method,
    headers: headers(extra),
    body: body === undefined ? undefined : JSON.stringify(body),
    cache: "no-store",
  });
  let json = null;
  const text = await r.text();
  if (text) {
    try { json = JSON.parse(text); } catch { json = { detail: text }; }
  }
  if (!r.ok) throw new ApiError(r.status, json);
  return { body: json, etag: r.headers.get("ETag"), status: r.status };
}

export const get = async (path) => (await call("GET", path)).body;

/**
 * Server-sent events over fetch (EventSource cannot send the Authorization header).
 * Calls onEvent(name, data) per event; returns an AbortController to stop.
 */
export function stream(path, onEvent, onError) {
  const ctl = new AbortController();
  (async () => {
    const r = await fetch(path, { headers: headers({ Accept: "text/event-stream" }), signal: ctl.signal, cache: "no-store" });
    if (!r.ok) throw new ApiError(r.status, await r.json().catch(() => null));
    const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += value;
      let cut;
      while ((cut = buf.indexOf("\n\n")) >= 0) {
        const block = buf.slice(0, cut);
        buf = buf.slice(cut + 2);
        let name = "message";
        const data = [];
        for (const line of block.split("\n")) {
          if (line.startsWith("event:")) name = line.slice(6).trim();
          else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
        }
        if (data.length) {
          // Events received, for the console's measurements (bench/README.md).
          globalThis.tribuneEvents = (globalThis.tribuneEvents || 0) + 1;
          try { onEvent(name, JSON.parse(data.join("\n"))); } catch (e) { console.warn("bad event", e); }
        }
      }
    }
  })().catch((e) => { if (e.name !== "AbortError" && onError) onError(e); });
  return ctl;
}
