// The attestation log: search by kind, subject and time, and an entry's inclusion proof checked
// here in the browser (verify.js) against a signed tree head.

import { get } from "./api.js";
import { h, replace, when } from "./dom.js";
import { proveEntry } from "./verify.js";

const KINDS = ["", "verdict", "violation", "action", "migration", "policy_change", "enclave_change", "usage_digest", "log_key", "host_change", "membership_change", "token_change"];
const PAGE = 1000;
const SHOWN_MAX = 200;

export async function logPage(main, index) {
  if (index !== null) return entryPage(main, index);
  const p = new URLSearchParams(location.search);
  const kind = h("select", { id: "q-kind" }, KINDS.map((k) => h("option", { value: k }, k || "any")));
  const subject = h("input", { id: "q-subject", value: p.get("subject") || "" });
  const since = h("input", { id: "q-since", type: "datetime-local", step: 1 });
  const until = h("input", { id: "q-until", type: "datetime-local", step: 1 });
  kind.value = p.get("kind") || "";
  const results = h("tbody");
  const note = h("p", { role: "status", id: "log-note" });
  const form = h("form", { class: "filters", role: "search" },
    h("label", {}, "Kind", kind), h("label", {}, "Subject", subject),
    h("label", {}, "From (local time)", since), h("label", {}, "To", until),
    h("button", { type: "submit" }, "Search"));
  const search = async () => {
    const q = new URLSearchParams();
    if (kind.value) q.set("kind", kind.value);
    if (subject.value) q.set("subject", subject.value);
    history.replaceState(null, "", q.toString() ? `/ui/log?${q}` : "/ui/log");
    replace(note, "Searching…");
    const from = since.value ? new Date(since.value).getTime() : -Infinity;
    const to = until.value ? new Date(until.value).getTime() : Infinity;
    const sth = await get("/v1/log/sth");
    const found = [];
    let scanned = 0;
    // Newest first, a page at a time, until enough are found or the time range is passed.
    for (let end = sth.tree_size - 1; end >= 0 && found.length < SHOWN_MAX && scanned < 100 * PAGE; end -= PAGE) {
      const start = Math.max(0, end - PAGE + 1);
      q.set("start", start); q.set("end", end);
      const page = await get(`/v1/log/entries?${q}`);
      scanned += end - start + 1;
      const hits = page.entries.filter((e) => e.at_ms >= from && e.at_ms <= to).reverse();
      found.push(...hits);
      if (page.entries.length && page.entries[0].at_ms < from) break;
    }
    replace(results, found.slice(0, SHOWN_MAX).map((e) => h("tr", { "data-index": e.index },
      h("td", { class: "num" }, h("a", { href: `/ui/log/${e.index}` }, String(e.index))),
      h("td", {}, when(e.at_ms)), h("td", {}, e.kind), h("td", {}, e.subject),
      h("td", {}, h("code", {}, JSON.stringify(e.detail).slice(0, 160))))));
    replace(note, `${found.length >= SHOWN_MAX ? `The newest ${SHOWN_MAX}` : found.length} match(es) among the newest ${scanned} of ${sth.tree_size} entries.`);
  };
  form.addEventListener("submit", (e) => { e.preventDefault(); search().catch((err) => replace(note, h("span", { class: "error" }, err.message))); });
  replace(main, h("h1", {}, "Attestation log"), form, note,
    h("table", { id: "log" }, h("thead", {}, h("tr", {}, ["index", "at", "kind", "subject", "detail"].map((c) => h("th", { scope: "col" }, c)))), results));
  await search();
}

async function entryPage(main, index) {
  const page = await get(`/v1/log/entries?start=${index}&end=${index}`);
  const e = page.entries[0];
  if (!e) { replace(main, h("h1", {}, `Log entry ${index}`), h("p", {}, "No such entry (or not visible to you).")); return; }
  const result = h("div", { id: "proof", role: "status", "aria-live": "polite" });
  const steps = h("ol", { class: "proof", id: "proof-steps" });
  const verify = h("button", { type: "button", id: "verify" }, "Verify inclusion here");
  const run = async () => {
    verify.disabled = true;
    replace(result, "Verifying in this browser…"); replace(steps);
    try {
      const done = await proveEntry(e, get);
      replace(steps, done.map((s) => h("li", {}, s)));
      replace(result, h("p", { class: "ok", id: "proof-ok", "data-verified": "true" }, `✓ Entry ${index} is in the log: verified in this browser (SHA-256 and Ed25519 via WebCrypto), without trusting the server.`));
    } catch (err) {
      replace(result, h("p", { class: "error", id: "proof-failed", "data-verified": "false" }, `✗ Not verified: ${err.message}`));
    }
    verify.disabled = false;
  };
  verify.addEventListener("click", run);
  replace(main, h("h1", {}, `Log entry ${index}`),
    h("p", {}, `${e.kind} · subject `, ["verdict", "violation", "action", "migration", "usage_digest", "enclave_change"].includes(e.kind)
      ? h("a", { href: `/ui/enclaves/${encodeURIComponent(e.subject)}` }, e.subject) : e.subject, ` · ${when(e.at_ms)}`),
    h("pre", { id: "entry" }, JSON.stringify(e.detail, null, 2)),
    h("p", { class: "muted" }, `leaf hash (server's, recomputed before use): ${e.leaf_hash}`),
    verify, result, steps);
  await run();
}
