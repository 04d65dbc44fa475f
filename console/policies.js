// Policies: the list, and an editor whose checker diagnostics sit at their line, a plan of what
// would have changed before applying, and apply with If-Match (a conflict shows both versions).

import { ApiError, call, get } from "./api.js";
import { h, replace, when } from "./dom.js";
import { may, go } from "./app.js";

export async function policiesPage(main) {
  const list = await get("/v1/policies");
  const name = h("input", { id: "new-name", pattern: "[a-z0-9][a-z0-9-]*", required: true });
  const form = h("form", { class: "filters" }, h("label", { for: "new-name" }, "New policy name", name), h("button", { type: "submit" }, "New policy"));
  form.addEventListener("submit", (e) => { e.preventDefault(); go(`/ui/policies/${encodeURIComponent(name.value)}`); });
  replace(main, h("h1", {}, "Policies"),
    may("write_policy") ? form : "",
    h("table", { id: "policies" },
      h("thead", {}, h("tr", {}, ["policy", "version", "updated by", "updated"].map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, list.map((p) => h("tr", { "data-policy": p.name },
        h("td", {}, h("a", { href: `/ui/policies/${encodeURIComponent(p.name)}` }, p.name)),
        h("td", { class: "num" }, String(p.version)), h("td", {}, p.updated_by), h("td", {}, when(p.updated_at_ms)))))));
}

export async function policyPage(main, name) {
  let stored = null;
  try {
    const r = await call("GET", `/v1/policies/${encodeURIComponent(name)}`);
    stored = r.body;
  } catch (e) {
    if (!(e instanceof ApiError && e.status === 404)) throw e;
  }
  const initial = stored ? stored.source : `policy "${name}" {\n  match tenant == "acme"\n  limit { cpu = 500m  memory = 256MiB }\n  on over_limit { throttle now }\n}\n`;
  const area = h("textarea", { id: "source", spellcheck: "false", "aria-label": `Source of policy ${name}`, rows: 20 });
  area.value = initial;
  const gutter = h("div", { class: "gutter", id: "gutter", "aria-hidden": "true" });
  const diags = h("div", { id: "diagnostics", role: "status", "aria-live": "polite" });
  const plan = h("div", { id: "plan" });
  const conflict = h("div", { id: "conflict" });
  const status = h("p", { id: "status", role: "status" });
  let base = stored ? stored.version : null; // the version the edit started from
  let planned = null; // the source the shown plan is for
  let marks = new Map(); // line → diagnostics
  const drawGutter = () => {
    const n = area.value.split("\n").length;
    const lines = [];
    for (let i = 1; i <= n; i++) {
      const d = marks.get(i);
      lines.push(d ? h("div", { class: "bad", "data-line": i, title: d.map((x) => `${x.code}: ${x.message}`).join("\n") }, `${d[0].code.startsWith("E") ? "✗" : "!"} ${i}`) : h("div", { "data-line": i }, String(i)));
    }
    replace(gutter, lines);
  };
  area.addEventListener("input", () => { planned = null; apply.disabled = true; drawGutter(); });
  const check = h("button", { type: "button", id: "check" }, "Check and plan");
  const apply = h("button", { type: "button", id: "apply", disabled: true }, stored ? "Apply" : "Create");
  const fmt = h("button", { type: "button", id: "format", class: "secondary" }, "Format");
  fmt.addEventListener("click", async () => {
    try {
      const { body } = await call("POST", "/v1/policy-format", { body: { source: area.value } });
      if (body.source !== area.value) { area.value = body.source; planned = null; apply.disabled = true; }
      replace(status, "Formatted.");
    } catch (e) { replace(status, h("span", { class: "error" }, e.message)); }
    drawGutter();
  });
  const jump = (line) => {
    const lines = area.value.split("\n");
    const at = lines.slice(0, line - 1).reduce((n, l) => n + l.length + 1, 0);
    area.focus();
    area.setSelectionRange(at, at + (lines[line - 1] || "").length);
  };
  check.addEventListener("click", async () => {
    replace(diags); replace(plan); replace(conflict); replace(status, "Checking…");
    marks = new Map();
    const source = area.value;
    try {
      const { body: p } = await call("POST", "/v1/policies/plan", { body: { source, since_s: 600 } });
      planned = source;
      apply.disabled = !may("write_policy");
      replace(status, h("span", { class: "ok" }, "Checks. Plan below: what the last 10 minutes of recorded usage would have seen under it."));
      const changed = p.enclaves.filter((c) => c.changed);
      replace(plan, h("h2", {}, "Plan"),
        h("p", {}, `${p.windows} usage window(s) replayed; replaces ${p.replaced.join(", ") || "nothing"}, adds ${p.added.join(", ") || "nothing"}; ${changed.length} of ${p.enclaves.length} enclave(s) would change.`),
        h("table", { id: "plan-table" },
          h("thead", {}, h("tr", {}, ["enclave", "throttles (recorded → planned)", "suspensions", "CPU limit before → after", "changed"].map((c) => h("th", { scope: "col" }, c)))),
          h("tbody", {}, p.enclaves.map((c) => h("tr", { "data-enclave": c.enclave },
            h("td", {}, c.enclave), h("td", {}, `${c.actual.throttles} → ${c.planned.throttles}`),
            h("td", {}, `${c.actual.suspensions} → ${c.planned.suspensions}`),
            h("td", {}, `${c.limits_before.cpu_millicores}m → ${c.limits_after.cpu_millicores}m`),
            h("td", {}, c.changed ? h("strong", {}, "yes") : "no"))))));
    } catch (e) {
      planned = null;
      apply.disabled = true;
      const ds = e.problem?.diagnostics || [];
      for (const d of ds) marks.set(d.line, [...(marks.get(d.line) || []), d]);
      replace(status, h("span", { class: "error" }, ds.length ? `${ds.length} problem(s): nothing can be applied until they are fixed.` : e.message));
      replace(diags, ds.map((d) => h("div", { class: "diag", "data-line": d.line, "data-code": d.code },
        h("a", { href: `#L${d.line}`, onclick: (ev) => { ev.preventDefault(); jump(d.line); } }, `line ${d.line}, column ${d.column}`),
        `: ${d.severity}[${d.code}]: ${d.message}`, d.hint ? `\n  hint: ${d.hint}` : "")));
    }
    drawGutter();
  });
  const put = async (version) => {
    const opts = version == null ? { body: { source: planned }, ifNoneMatch: true } : { body: { source: planned }, ifMatch: version };
    return call("PUT", `/v1/policies/${encodeURIComponent(name)}`, opts);
  };
  apply.addEventListener("click", async () => {
    replace(conflict);
    try {
      const { body: p } = await put(base);
      base = p.version;
      stored = p;
      apply.textContent = "Apply";
      apply.disabled = true;
      replace(status, h("span", { class: "ok", id: "applied" }, `Applied: ${name} is now version ${p.version}.`));
    } catch (e) {
      if (e instanceof ApiError && (e.status === 409 || e.status === 412)) {
        const theirs = (await call("GET", `/v1/policies/${encodeURIComponent(name)}`)).body;
        replace(status, h("span", { class: "error" }, `Conflict: ${name} changed since you opened it (you started from version ${base ?? "none"}; it is now version ${theirs.version}, by ${theirs.updated_by}).`));
        const mine = planned;
        const overwrite = h("button", { type: "button", id: "overwrite", class: "secondary" }, `Apply mine over version ${theirs.version}`);
        const take = h("button", { type: "button", id: "take-theirs", class: "secondary" }, "Discard mine, edit theirs");
        overwrite.addEventListener("click", async () => {
          try {
            const { body: p } = await put(theirs.version);
            base = p.version;
            replace(conflict);
            replace(status, h("span", { class: "ok", id: "applied" }, `Applied over version ${theirs.version}: now version ${p.version}.`));
          } catch (e2) { replace(status, h("span", { class: "error" }, e2.message)); }
        });
        take.addEventListener("click", () => { area.value = theirs.source; base = theirs.version; planned = null; apply.disabled = true; replace(conflict); drawGutter(); });
        replace(conflict, h("h2", {}, "Conflict: both versions"),
          h("div", { class: "diff" },
            h("section", { "aria-label": "Your version" }, h("h3", {}, `Yours (from version ${base ?? "none"})`), h("pre", { id: "conflict-mine" }, mine)),
            h("section", { "aria-label": "Stored version" }, h("h3", {}, `Stored: version ${theirs.version} by ${theirs.updated_by}`), h("pre", { id: "conflict-theirs" }, theirs.source))),
          h("div", { class: "row-actions" }, overwrite, take));
      } else {
        const ds = e.problem?.diagnostics || [];
        replace(status, h("span", { class: "error" }, ds.length ? ds.map((d) => `line ${d.line}: ${d.code}: ${d.message}`).join("\n") : e.message));
      }
    }
  });
  replace(main, h("h1", {}, `Policy ${name}`),
    h("p", { class: "muted" }, stored ? `version ${stored.version} · updated by ${stored.updated_by} at ${when(stored.updated_at_ms)}` : "new policy (not stored yet)"),
    h("div", { class: "editor" }, gutter, area),
    h("div", { class: "row-actions" }, fmt, check, may("write_policy") ? apply : h("span", { class: "muted" }, "Your role may not change policies.")),
    status, diags, conflict, plan);
  drawGutter();
  const line = Number((location.hash.match(/^#L(\d+)$/) || [])[1]);
  if (line) jump(line);
}
