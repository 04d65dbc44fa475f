// One enclave: its ladder step and cause, attestation, and live charts of CPU, memory,
// network (and GPU once reported) with its limit and guarantee and every enforcement marked.

import { get, stream } from "./api.js";
import { h, replace, cpu, bytes, bps, when } from "./dom.js";
import { Chart, WINDOW_MS } from "./chart.js";

const MARKED = new Set(["action", "violation", "verdict", "migration"]);
const PAGE = 1000;

/** Log entries about `subject` of the marked kinds, from `start` (inclusive) to the end. */
async function entriesSince(subject, start, size) {
  const pages = [];
  for (let s = start; s < size; s += PAGE) pages.push(s);
  const got = await Promise.all(pages.map((s) =>
    get(`/v1/log/entries?start=${s}&end=${Math.min(size - 1, s + PAGE - 1)}&subject=${encodeURIComponent(subject)}`)));
  return got.flatMap((p) => p.entries).filter((e) => MARKED.has(e.kind));
}

function markerOf(e) {
  const d = e.detail || {};
  const step = e.kind === "action" ? d.action : e.kind === "verdict" ? (d.trusted === false ? "untrusted" : "verdict") : e.kind;
  return { at_ms: e.at_ms, kind: e.kind, step, index: e.index, label: `${e.kind} ${step}${d.cause ? ` (${d.cause})` : ""} · log entry ${e.index}` };
}

export async function enclavePage(main, id) {
  const path = `/v1/enclaves/${encodeURIComponent(id)}`;
  const [enclave, status, sth] = await Promise.all([get(path), get(`${path}/status`), get("/v1/log/sth")]);
  const alloc = status.allocation;
  const charts = {
    cpu: new Chart({ id: "chart-cpu", title: "CPU", series: [{ key: "cpu_millicores", label: "CPU", colour: "#1d4ed8" }], format: cpu }),
    mem: new Chart({ id: "chart-memory", title: "Memory", series: [{ key: "memory_bytes", label: "memory", colour: "#7c3aed" }], format: bytes }),
    net: new Chart({ id: "chart-network", title: "Network", series: [
      { key: "egress_bits_per_sec", label: "egress", colour: "#0f766e" },
      { key: "ingress_bits_per_sec", label: "ingress", colour: "#b45309" }], format: bps }),
    gpu: new Chart({ id: "chart-gpu", title: "GPU", series: [{ key: "gpu_percent", label: "GPU", colour: "#be185d" }], format: (v) => `${v.toFixed(0)}%` }),
  };
  if (alloc) {
    charts.cpu.setLines({ limit: alloc.limits.cpu_millicores, guarantee: alloc.guaranteed.cpu_millicores });
    charts.mem.setLines({ limit: alloc.limits.memory_bytes, guarantee: alloc.guaranteed.memory_bytes });
    charts.net.setLines({ limit: alloc.limits.egress_bits_per_sec, guarantee: alloc.guaranteed.egress_bits_per_sec });
    charts.gpu.setLines({ limit: alloc.limits.gpu_percent, guarantee: alloc.guaranteed.gpu_percent });
  }
  const gpuFig = charts.gpu.el;
  gpuFig.hidden = !(alloc && (alloc.limits.gpu_percent || alloc.guaranteed.gpu_percent));
  const ladder = h("div", { id: "ladder" });
  const actions = h("tbody");
  const note = h("p", { class: "muted", id: "stream-note" }, "Connecting to the live usage stream…");
  let markers = [];
  const drawLadder = (st) => {
    const l = st.status?.ladder;
    const cause = l?.cause || "";
    const m = cause.match(/^(\S+) .*\(line (\d+)\)$/);
    replace(ladder,
      h("p", {}, "State ", h("span", { class: `pill ${st.state}`, id: "state" }, st.state),
        " · ladder step ", h("span", { class: `pill ${l?.step ?? "none"}`, id: "step" }, l?.step ?? "none"),
        l?.since_ms ? ` since ${when(l.since_ms)}` : "",
        cause ? [" · cause ", m ? h("a", { href: `/ui/policies/${encodeURIComponent(m[1])}#L${m[2]}`, id: "cause" }, cause) : h("span", { id: "cause" }, cause)] : ""),
      st.status?.operator_hold ? h("p", { class: "banner bad" }, "Suspended by an operator: only an operator's resume lifts it.") : "",
      h("p", {}, "Attestation: ", st.status?.attestation
        ? [st.status.attestation.trusted ? h("span", { class: "ok" }, "trusted") : h("span", { class: "error" }, "NOT trusted"),
          ` · ${st.status.attestation.tee ?? "?"} · measurement ${(st.status.attestation.measurement || "").slice(0, 16)}…`]
        : "no verdict yet"));
  };
  const drawActions = () => {
    charts.cpu.setMarkers(markers); charts.mem.setMarkers(markers); charts.net.setMarkers(markers); charts.gpu.setMarkers(markers);
    replace(actions, markers.slice().reverse().map((m) => h("tr", { "data-action": m.step },
      h("td", {}, when(m.at_ms)), h("td", {}, m.kind), h("td", {}, h("span", { class: `pill ${m.step}` }, m.step)),
      h("td", {}, h("a", { href: `/ui/log/${m.index}` }, `entry ${m.index}`)))));
  };
  replace(main,
    h("h1", {}, `Enclave ${id}`),
    h("p", {}, `tenant ${enclave.tenant} · host `, enclave.placement ? h("a", { href: "/ui/hosts" }, enclave.placement.host) : "unplaced",
      ` · TEE ${enclave.tee} · version ${enclave.version}`),
    ladder,
    note,
    h("div", { class: "charts" }, charts.cpu.el, charts.mem.el, charts.net.el, gpuFig),
    h("h2", {}, "Enforcement and verdicts (attestation log)"),
    h("table", { id: "actions" }, h("thead", {}, h("tr", {}, ["at", "kind", "what", "log entry"].map((c) => h("th", { scope: "col" }, c)))), actions));
  drawLadder(status);
  // History: the log entries of the last 10 minutes (scanning back at most 20 000 entries).
  let size = sth.tree_size;
  const from = Math.max(0, size - 20000);
  markers = (await entriesSince(id, from, size)).filter((e) => e.at_ms >= Date.now() - WINDOW_MS).map(markerOf);
  drawActions();
  let fetching = Promise.resolve();
  const refresh = () => {
    fetching = fetching.then(async () => {
      const [now, st] = await Promise.all([get("/v1/log/sth"), get(`${path}/status`)]).catch(() => [null, null]);
      if (!now) return;
      const fresh = await entriesSince(id, size, now.tree_size);
      size = now.tree_size;
      const seen = new Set(markers.map((m) => m.index));
      markers = markers.concat(fresh.filter((e) => !seen.has(e.index)).map(markerOf));
      drawActions();
      drawLadder(st);
    });
  };
  let points = 0;
  const s = stream(`/v1/usage/stream?enclave=${encodeURIComponent(id)}`, (name, d) => {
    if (name === "history") {
      for (const c of Object.values(charts)) c.add(d.points);
      points += d.points.length;
      replace(note, d.points.length ? `Live: 1 s points from this controller (${d.points.length} in the last 10 minutes).`
        : "Live: no usage from this enclave has reached this controller yet (its host's agent may stream to another controller).");
    } else if (name === "point") {
      for (const c of Object.values(charts)) c.push(d);
      if (points++ === 0) replace(note, "Live: 1 s points from this controller.");
    } else if (name === "action") {
      refresh();
    } else if (name === "lagged") {
      replace(note, `Live: this page fell behind and skipped ${d.dropped} update(s).`);
    }
  }, (err) => replace(note, `The live stream stopped: ${err.message}`));
  // Decisions are also picked up every 5 s (one taken on another controller sends no event here).
  const timer = setInterval(refresh, 5000);
  return () => { s.abort(); clearInterval(timer); };
}
