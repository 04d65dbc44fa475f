// A live SVG line chart of the last 10 minutes at 1 s: series, a limit and a guarantee line,
// and enforcement markers. Redraws at most once per animation frame, however many points come.

import { h } from "./dom.js";

export const WINDOW_MS = 10 * 60 * 1000;
const W = 600, H = 160, PAD_L = 56, PAD_B = 16;

export class Chart {
  /**
   * series: [{ key, label, colour }]; format: value → text; lines: { limit, guarantee } (values).
   */
  constructor({ title, series, format, id }) {
    this.series = series;
    this.format = format;
    this.points = []; // {t_ms, ...values}, sorted by t_ms
    this.lines = {};
    this.markers = []; // {at_ms, kind, label, index}
    this.pending = false;
    this.svg = h("svg:svg", { class: "chart", viewBox: `0 0 ${W} ${H + PAD_B}`, role: "img", "aria-label": `${title}, last 10 minutes` });
    this.layers = {
      grid: h("svg:g"), lines: h("svg:g"), series: h("svg:g"), markers: h("svg:g", { "data-markers": id }),
    };
    this.polylines = series.map((s) => h("svg:polyline", { stroke: s.colour, "data-series": s.key }));
    this.svg.append(this.layers.grid, this.layers.lines, this.layers.series, this.layers.markers);
    this.layers.series.append(...this.polylines);
    this.el = h("figure", { id },
      h("figcaption", {}, title),
      this.svg,
      h("div", { class: "legend" },
        series.map((s) => h("span", {}, h("svg:svg", { width: 12, height: 4, "aria-hidden": "true" }, h("svg:rect", { width: 12, height: 4, fill: s.colour })), " ", s.label)),
        h("span", { class: "muted" }, "– – limit, · · · guarantee, | enforcement")));
  }

  /** Adds or replaces points (by t_ms) and schedules a redraw. */
  add(points) {
    const byT = new Map(this.points.map((p) => [p.t_ms, p]));
    for (const p of points) byT.set(p.t_ms, p);
    const cutoff = Date.now() - WINDOW_MS - 5000;
    this.points = [...byT.values()].filter((p) => p.t_ms >= cutoff).sort((a, b) => a.t_ms - b.t_ms);
    this.schedule();
  }

  /** Appends one point (the live path: no re-sort when it is the newest). */
  push(p) {
    const last = this.points[this.points.length - 1];
    if (last && last.t_ms === p.t_ms) this.points[this.points.length - 1] = p;
    else if (!last || last.t_ms < p.t_ms) this.points.push(p);
    else return this.add([p]);
    while (this.points.length && this.points[0].t_ms < Date.now() - WINDOW_MS - 5000) this.points.shift();
    this.schedule();
  }

  setLines(lines) { this.lines = lines; this.schedule(); }

  setMarkers(markers) { this.markers = markers; this.schedule(); }

  schedule() {
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => { this.pending = false; this.draw(); });
  }

  draw() {
    const now = Date.now(), from = now - WINDOW_MS;
    let max = 0;
    for (const p of this.points) for (const s of this.series) max = Math.max(max, p[s.key] || 0);
    for (const v of Object.values(this.lines)) if (v) max = Math.max(max, v);
    max = max > 0 ? max * 1.15 : 1;
    const x = (t) => PAD_L + ((t - from) / WINDOW_MS) * (W - PAD_L);
    const y = (v) => H - (v / max) * (H - 8);
    // Grid: 4 value lines, minute ticks.
    const grid = [];
    for (let i = 0; i <= 4; i++) {
      const v = (max * i) / 4, yy = y(v);
      grid.push(h("svg:line", { class: "grid", x1: PAD_L, x2: W, y1: yy, y2: yy }),
        h("svg:text", { x: PAD_L - 4, y: yy + 3, "text-anchor": "end" }, this.format(v)));
    }
    for (let m = 0; m <= 10; m += 2) {
      const xx = x(from + m * 60000);
      grid.push(h("svg:text", { x: xx, y: H + 12, "text-anchor": m === 10 ? "end" : "middle" }, m === 10 ? "now" : `-${10 - m}m`));
    }
    this.layers.grid.replaceChildren(...grid);
    const lines = [];
    for (const [kind, v] of Object.entries(this.lines)) {
      if (!v) continue;
      lines.push(h("svg:line", { class: kind, "data-line": kind, x1: PAD_L, x2: W, y1: y(v), y2: y(v) },
        h("svg:title", {}, `${kind}: ${this.format(v)}`)));
    }
    this.layers.lines.replaceChildren(...lines);
    this.series.forEach((s, i) => {
      let pts = "";
      for (const p of this.points) {
        if (p.t_ms < from || p[s.key] == null) continue;
        pts += `${x(p.t_ms).toFixed(1)},${y(p[s.key]).toFixed(1)} `;
      }
      this.polylines[i].setAttribute("points", pts);
    });
    const marks = [];
    for (const m of this.markers) {
      if (m.at_ms < from) continue;
      const xx = x(Math.min(m.at_ms, now));
      marks.push(h("svg:line", { class: `marker ${m.step || ""}`, "data-marker": m.step || m.kind, "data-index": m.index, x1: xx, x2: xx, y1: 0, y2: H },
        h("svg:title", {}, `${m.label} at ${new Date(m.at_ms).toISOString()}`)));
    }
    this.layers.markers.replaceChildren(...marks);
  }
}

/** A CPU sparkline for list rows: one polyline, redrawn at most once per frame. */
export class Spark {
  constructor(label) {
    this.points = [];
    this.line = h("svg:polyline");
    this.el = h("svg:svg", { class: "spark", viewBox: "0 0 160 24", role: "img", "aria-label": label }, this.line);
    this.pending = false;
  }
  push(t_ms, v) {
    const last = this.points[this.points.length - 1];
    if (last && last[0] === t_ms) last[1] = v; else this.points.push([t_ms, v]);
    while (this.points.length > 600) this.points.shift();
    if (!this.pending) { this.pending = true; requestAnimationFrame(() => { this.pending = false; this.draw(); }); }
  }
  draw() {
    const now = Date.now(), from = now - WINDOW_MS;
    let max = 1;
    for (const [, v] of this.points) max = Math.max(max, v);
    let pts = "";
    for (const [t, v] of this.points) if (t >= from) pts += `${(((t - from) / WINDOW_MS) * 160).toFixed(1)},${(23 - (v / max) * 22).toFixed(1)} `;
    this.line.setAttribute("points", pts);
  }
}
