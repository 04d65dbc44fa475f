// Cluster, hosts and the enclave list.

import { ApiError, call, get, stream } from "./api.js";
import { h, replace, table, cpu, bytes, bps, when } from "./dom.js";
import { Spark } from "./chart.js";
import { may, go } from "./app.js";

/**
 * Runs an admin action (a write through the API), says what happened in `out` (a live
 * region), then redraws the page from the server's state.
 */
async function act(out, what, f) {
  replace(out, `${what}…`);
  try {
    const said = await f();
    replace(out, h("span", { class: "ok" }, said || `${what}: done.`));
    setTimeout(() => go(location.pathname), 600);
  } catch (err) {
    replace(out, h("span", { class: "error" }, err instanceof ApiError ? `${what}: ${err.status}: ${err.message}` : `${what}: ${err}`));
  }
}

export async function clusterPage(main) {
  const c = await get("/v1/cluster");
  const admin = may("change_membership");
  const out = h("p", { role: "status", id: "member-result" });
  const actions = (m) => h("td", {},
    m.voter ? "" : h("button", { type: "button", "data-action": "promote", onclick: () =>
      act(out, `Promote controller ${m.id}`, () => call("POST", `/v1/cluster/members/${m.id}/promote`)) }, "Promote"),
    " ",
    h("button", { type: "button", "data-action": "remove", "aria-label": `Remove controller ${m.id}`, onclick: (e) => {
      // Two steps: the first click asks, the second (on the same button) removes.
      if (e.target.dataset.armed !== "yes") { e.target.dataset.armed = "yes"; e.target.textContent = `Confirm: remove ${m.id}`; return; }
      act(out, `Remove controller ${m.id}`, () => call("DELETE", `/v1/cluster/members/${m.id}`));
    } }, "Remove"));
  const id = h("input", { id: "member-id", type: "number", min: 1, required: true });
  const address = h("input", { id: "member-address", required: true, placeholder: "10.0.0.4:7401" });
  const addForm = h("form", { id: "add-member" },
    h("h2", {}, "Add a controller (as a learner; promote it once it has caught up)"),
    h("label", { for: "member-id" }, "Node id ", id), " ",
    h("label", { for: "member-address" }, "Address ", address), " ",
    h("button", { type: "submit" }, "Add learner"));
  addForm.addEventListener("submit", (e) => {
    e.preventDefault();
    act(out, `Add controller ${id.value}`, () => call("POST", "/v1/cluster/members", { body: { id: Number(id.value), address: address.value.trim() } }));
  });
  const rows = c.members.map((m) => h("tr", { "data-member": m.id },
    h("td", {}, String(m.id), m.id === c.leader ? h("span", { class: "pill" }, " leader") : ""),
    h("td", {}, m.address),
    h("td", {}, m.voter ? "voter" : "learner"),
    h("td", {}, m.healthy ? h("span", { class: "ok" }, "healthy") : h("span", { class: "error" }, "unreachable")),
    h("td", {}, m.status?.state ?? "–"),
    h("td", { class: "num" }, m.status?.term ?? "–"),
    h("td", { class: "num" }, m.status?.last_applied ?? "–"),
    h("td", { class: "num" }, m.lag ?? "–"),
    admin ? actions(m) : ""));
  replace(main,
    h("h1", {}, "Cluster"),
    h("p", {}, `Leader: controller ${c.leader ?? "none"} · term ${c.term} · commit index ${c.commit_index ?? "–"} · answered by controller ${c.responder}`),
    table(["id", "address", "kind", "health", "raft state", "term", "applied", "apply lag (entries)", ...(admin ? ["actions"] : [])], rows, { id: "members" }),
    admin ? addForm : h("p", { class: "muted" }, "Membership changes are for admins (tribune cluster add/promote/remove)."),
    out);
}

/** Per host: capacity, what is guaranteed to its enclaves, what they use now (live). */
export async function hostsPage(main) {
  const [hosts, enclaves] = await Promise.all([get("/v1/hosts"), get("/v1/enclaves")]);
  const writer = may("write_host");
  const out = h("p", { role: "status", id: "host-result" });
  const hostActions = (host) => {
    const post = (verb) => () => act(out, `${verb[0].toUpperCase()}${verb.slice(1)} ${host.id}`, async () => {
      const r = (await call("POST", `/v1/hosts/${encodeURIComponent(host.id)}/${verb}`)).body;
      if (verb !== "drain") return `${host.id} is now ${r.schedulable}.`;
      const moving = r.moves.filter((m) => m.outcome === "moving").map((m) => `${m.enclave} → ${m.to}`);
      const left = r.moves.filter((m) => m.outcome !== "moving").map((m) => `${m.enclave} (${m.reason})`);
      return `${host.id} is draining. Moving: ${moving.join(", ") || "none"}. Staying: ${left.join(", ") || "none"}.`;
    });
    const cordoned = host.schedulable && host.schedulable !== "ready";
    return h("td", {},
      cordoned
        ? h("button", { type: "button", "data-action": "uncordon", onclick: post("uncordon") }, "Uncordon")
        : h("button", { type: "button", "data-action": "cordon", onclick: post("cordon") }, "Cordon"),
      " ",
      h("button", { type: "button", "data-action": "drain", "aria-label": `Drain ${host.id}`, onclick: (e) => {
        if (e.target.dataset.armed !== "yes") { e.target.dataset.armed = "yes"; e.target.textContent = `Confirm: drain ${host.id}`; return; }
        post("drain")();
      } }, "Drain…"));
  };
  const statuses = await statusesOf(enclaves);
  const hostOf = new Map(enclaves.map((e) => [e.id, e.placement?.host]));
  const used = new Map(); // enclave → latest point
  const body = h("tbody");
  const draw = () => {
    const rows = hosts.map((host) => {
      const mine = enclaves.filter((e) => e.placement?.host === host.id);
      const g = { cpu: 0, mem: 0 }, u = { cpu: 0, mem: 0 };
      for (const e of mine) {
        const a = statuses.get(e.id)?.allocation;
        if (a) { g.cpu += a.guaranteed.cpu_millicores; g.mem += a.guaranteed.memory_bytes; }
        const p = used.get(e.id);
        if (p) { u.cpu += p.cpu_millicores; u.mem += p.memory_bytes; }
      }
      const observe = host.enforcement && host.enforcement !== "enforcing";
      return h("tr", { "data-host": host.id },
        h("td", {}, host.id, h("div", { class: "muted" }, host.address)),
        h("td", {}, host.tee, " · ", host.attestation_status),
        h("td", {}, observe ? h("span", { class: "pill observe", role: "status" }, `OBSERVE-ONLY: ${host.enforcement}`) : h("span", { class: "ok" }, host.enforcement || "unknown")),
        h("td", {}, meter(host.capacity.cpu_millicores, g.cpu, u.cpu, cpu)),
        h("td", {}, meter(host.capacity.memory_bytes, g.mem, u.mem, bytes)),
        h("td", { class: "num" }, String(mine.length)),
        h("td", {}, schedulable(host)),
        h("td", {}, when(host.last_heartbeat_ms)),
        writer ? hostActions(host) : "");
    });
    replace(body, rows);
  };
  const observeOnly = hosts.filter((x) => x.enforcement && x.enforcement !== "enforcing");
  replace(main, h("h1", {}, "Hosts"),
    observeOnly.length ? h("div", { class: "banner observe", role: "alert" },
      `${observeOnly.length} host(s) only OBSERVE: limits are decided and logged but NOT enforced there (${observeOnly.map((x) => x.id).join(", ")}).`) : "",
    h("table", { id: "hosts" },
      h("thead", {}, h("tr", {}, ["host", "TEE · attestation", "enforcement", "CPU: capacity / guaranteed / used", "memory", "enclaves", "scheduling", "last heartbeat", ...(writer ? ["actions"] : [])].map((c) => h("th", { scope: "col" }, c)))),
      body),
    h("p", { class: "muted" }, "Used is live, from the usage reports verified by this controller. Cordoned hosts get no new enclaves; draining moves process enclaves elsewhere (stop and restart) and leaves QEMU ones."),
    out);
  draw();
  let timer = null;
  const s = stream("/v1/usage/stream", (name, d) => {
    if (name === "point" && hostOf.has(d.enclave)) used.set(d.enclave, d);
    if (name === "history" && d.points.length) used.set(d.enclave, d.points[d.points.length - 1]);
    if (!timer) timer = setTimeout(() => { timer = null; draw(); }, 1000);
  });
  return () => { s.abort(); clearTimeout(timer); };
}

/** Whether the scheduler may place enclaves on the host: ready, cordoned or draining. */
function schedulable(host) {
  const s = host.schedulable || "ready";
  return s === "ready" ? h("span", { class: "ok" }, s) : h("span", { class: "pill observe" }, s);
}

function meter(capacity, guaranteed, used, fmt) {
  if (!capacity) return h("div", { class: "muted" }, `capacity not reported / ${fmt(guaranteed)} / ${fmt(used)}`);
  const pct = (v) => `${Math.min(100, capacity ? (v / capacity) * 100 : 0).toFixed(1)}%`;
  const bar = h("div", { class: "bar", role: "img", "aria-label": `${fmt(used)} used, ${fmt(guaranteed)} guaranteed of ${fmt(capacity)}` },
    h("span", { class: "g" }), h("span", { class: "u" }));
  bar.children[0].style.width = pct(guaranteed);
  bar.children[1].style.width = pct(used);
  return h("div", {}, bar, h("div", { class: "muted" }, `${fmt(capacity)} / ${fmt(guaranteed)} / ${fmt(used)}`));
}

/** GET …/status for each enclave, in parallel (bounded to the first 500). */
export async function statusesOf(enclaves) {
  const out = new Map();
  await Promise.all(enclaves.slice(0, 500).map(async (e) => {
    try { out.set(e.id, await get(`/v1/enclaves/${encodeURIComponent(e.id)}/status`)); } catch { /* shown as unknown */ }
  }));
  return out;
}

export async function enclavesPage(main) {
  const enclaves = await get("/v1/enclaves");
  const statuses = await statusesOf(enclaves);
  const stepOf = (e) => statuses.get(e.id)?.status?.ladder?.step ?? "none";
  const options = (vals) => [h("option", { value: "" }, "any"), ...[...new Set(vals)].sort().map((v) => h("option", { value: v }, v))];
  const params = new URLSearchParams(location.search);
  const f = {
    tenant: h("select", { id: "f-tenant" }, options(enclaves.map((e) => e.tenant))),
    host: h("select", { id: "f-host" }, options(enclaves.map((e) => e.placement?.host ?? "unplaced"))),
    state: h("select", { id: "f-state" }, options(enclaves.map((e) => e.state))),
    step: h("select", { id: "f-step" }, options(enclaves.map(stepOf))),
  };
  for (const [k, el] of Object.entries(f)) el.value = params.get(k) ?? "";
  const sparks = new Map();
  const body = h("tbody");
  const draw = () => {
    const q = new URLSearchParams();
    for (const [k, el] of Object.entries(f)) if (el.value) q.set(k, el.value);
    history.replaceState(null, "", q.toString() ? `/ui/enclaves?${q}` : "/ui/enclaves");
    const rows = enclaves.filter((e) =>
      (!f.tenant.value || e.tenant === f.tenant.value) &&
      (!f.host.value || (e.placement?.host ?? "unplaced") === f.host.value) &&
      (!f.state.value || e.state === f.state.value) &&
      (!f.step.value || stepOf(e) === f.step.value)).map((e) => {
      if (!sparks.has(e.id)) sparks.set(e.id, new Spark(`CPU of ${e.id}, last 10 minutes`));
      const st = statuses.get(e.id)?.status;
      return h("tr", { "data-enclave": e.id },
        h("td", {}, h("a", { href: `/ui/enclaves/${encodeURIComponent(e.id)}` }, e.id)),
        h("td", {}, e.tenant),
        h("td", {}, e.placement?.host ?? "unplaced"),
        h("td", {}, h("span", { class: `pill ${e.state}` }, e.state)),
        h("td", {}, h("span", { class: `pill ${stepOf(e)}` }, stepOf(e)), st?.ladder?.cause ? h("div", { class: "muted" }, st.ladder.cause) : ""),
        h("td", {}, st?.attestation ? (st.attestation.trusted ? "trusted" : h("span", { class: "error" }, "not trusted")) : "–"),
        h("td", {}, sparks.get(e.id).el));
    });
    replace(body, rows);
  };
  for (const el of Object.values(f)) el.addEventListener("change", draw);
  replace(main, h("h1", {}, "Enclaves"),
    h("div", { class: "filters", role: "search" },
      h("label", {}, "Tenant", f.tenant), h("label", {}, "Host", f.host), h("label", {}, "State", f.state), h("label", {}, "Ladder step", f.step)),
    h("table", { id: "enclaves" },
      h("thead", {}, h("tr", {}, ["enclave", "tenant", "host", "state", "ladder step · cause", "attestation", "CPU, 10 min"].map((c) => h("th", { scope: "col" }, c)))),
      body),
    h("p", { class: "muted", id: "count" }, `${enclaves.length} enclave(s) visible to you.`));
  draw();
  const s = stream("/v1/usage/stream", (name, d) => {
    const sp = sparks.get(d.enclave);
    if (!sp) return;
    if (name === "history") for (const p of d.points) sp.push(p.t_ms, p.cpu_millicores);
    if (name === "point") sp.push(d.t_ms, d.cpu_millicores);
  });
  return () => s.abort();
}
