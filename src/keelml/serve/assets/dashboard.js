// keelml dashboard: polls /dashboard/data and draws with inline SVG. Data is written with
// textContent and SVG attributes only (never parsed as markup), so every value is escaped.
"use strict";
(function () {
  const SVG = "http://www.w3.org/2000/svg";
  const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                  "#bcbd22", "#17becf", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173"];
  const REFRESH_MS = 3000;

  function el(tag, attrs, text) {
    const node = tag.startsWith("svg:") ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }
  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); return node; }
  function fmt(v, digits) {
    if (v === null || v === undefined) return "–";
    if (typeof v === "number") return Number.isInteger(v) ? String(v) : v.toFixed(digits === undefined ? 3 : digits);
    return String(v);
  }
  function when(t) { return typeof t === "number" ? new Date(t * 1000).toLocaleString() : fmt(t); }

  // series: [{name, color, points: [[x, y|null], ...]}]
  function lineChart(container, series) {
    clear(container);
    const W = 600, H = 180, L = 44, R = 8, T = 8, B = 22;
    const all = series.flatMap(s => s.points.filter(p => p[1] !== null && Number.isFinite(p[1])));
    if (all.length === 0) { container.appendChild(el("p", {class: "empty"}, "no data in the window yet")); return; }
    const xs = all.map(p => p[0]), ys = all.map(p => p[1]);
    let x0 = Math.min(...xs), x1 = Math.max(...xs); if (x1 === x0) { x0 -= 1; x1 += 1; }
    const y1 = Math.max(...ys, 0) * 1.1 || 1, y0 = 0;
    const sx = x => L + (x - x0) / (x1 - x0) * (W - L - R), sy = y => H - B - (y - y0) / (y1 - y0) * (H - T - B);
    const svg = el("svg:svg", {viewBox: `0 0 ${W} ${H}`, role: "img", "data-points": all.length});
    svg.appendChild(el("svg:line", {class: "axis", x1: L, y1: H - B, x2: W - R, y2: H - B}));
    svg.appendChild(el("svg:line", {class: "axis", x1: L, y1: T, x2: L, y2: H - B}));
    svg.appendChild(el("svg:text", {class: "label", x: 2, y: T + 8}, fmt(y1, 2)));
    svg.appendChild(el("svg:text", {class: "label", x: 2, y: H - B}, "0"));
    svg.appendChild(el("svg:text", {class: "label", x: L, y: H - 6}, new Date(x0 * 1000).toLocaleTimeString()));
    svg.appendChild(el("svg:text", {class: "label", x: W - R - 60, y: H - 6},
                       new Date(x1 * 1000).toLocaleTimeString()));
    series.forEach((s, i) => {
      const color = s.color || COLORS[i % COLORS.length];
      const pts = s.points.filter(p => p[1] !== null && Number.isFinite(p[1]));
      if (pts.length > 1) {
        svg.appendChild(el("svg:polyline", {class: "line", stroke: color, "data-series": s.name,
          points: pts.map(p => `${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`).join(" ")}));
      }
      for (const p of pts) {
        const dot = el("svg:circle", {class: "dot point", fill: color, cx: sx(p[0]).toFixed(1),
                                      cy: sy(p[1]).toFixed(1), r: 2.5});
        dot.appendChild(el("svg:title", {}, `${s.name}: ${fmt(p[1])}`));
        svg.appendChild(dot);
      }
    });
    container.appendChild(svg);
  }

  function table(node, head, rows) {
    clear(node);
    const tr = el("tr");
    head.forEach(h => tr.appendChild(el("th", {}, h)));
    node.appendChild(tr);
    for (const row of rows) {
      const line = el("tr");
      row.forEach(cell => {
        const td = el("td", cell && cell.cls ? {class: cell.cls} : {}, cell && cell.cls ? cell.text : fmt(cell));
        line.appendChild(td);
      });
      node.appendChild(line);
    }
  }

  function render(d) {
    document.getElementById("model").textContent = `${d.model} v${fmt(d.version)}`;
    lineChart(document.getElementById("traffic"), [{name: "rows", points: d.traffic.map(p => [p.t, p.rows])}]);
    lineChart(document.getElementById("latency"), [
      {name: "p50", points: d.latency.map(p => [p.t, p.p50])},
      {name: "p99", color: "#d62728", points: d.latency.map(p => [p.t, p.p99])}]);
    const names = Object.keys(d.drift.features);
    lineChart(document.getElementById("drift"), names.map((n, i) => ({name: n, color: COLORS[i % COLORS.length],
      points: d.drift.times.map((t, j) => [t, d.drift.features[n][j]])})));
    const legend = clear(document.getElementById("drift-legend"));
    names.forEach((n, i) => {
      const item = el("span", {});
      const swatch = el("i", {});
      swatch.style.backgroundColor = COLORS[i % COLORS.length];  // CSSOM, allowed by the CSP
      item.appendChild(swatch);
      item.appendChild(document.createTextNode(n + ((d.drifted || []).includes(n) ? " (drift)" : "")));
      legend.appendChild(item);
    });
    const live = d.live;
    const rows = [["version", `${fmt(live.version)} (${fmt(live.engine)})`], ["rows predicted", live.rows],
                  ["rows logged", live.log_rows], ["log entries dropped", live.log_dropped], ["swaps", live.swaps],
                  ["rows in window", d.log_rows_in_window]];
    if (d.performance) rows.push([`live ${fmt(d.performance.name)}`, d.performance.value]);
    for (const [k, v] of Object.entries(live.requests)) rows.push([`requests ${k}`, v]);
    for (const [k, v] of Object.entries(live.errors)) rows.push([`errors ${k}`, v]);
    table(document.getElementById("live"), ["metric", "value"], rows);
    table(document.getElementById("rules"), ["rule", "status", "detail"], d.rules.map(r =>
      [r.rule, {cls: r.status === "fired" ? "fired" : "ok", text: fmt(r.status)}, r.detail]));
    table(document.getElementById("alerts"), ["alert logged at", "rules", "drifted columns"], d.alerts.map(a =>
      [when(a.at || a.ts || a.time), (a.rules || a.fired || []).map(r => r.rule || r).join(", "),
       (a.drifted_columns || []).join(", ")]));
    table(document.getElementById("versions"), ["version", "registered", "primary metric", "run"],
          d.history.versions.map(v => [v.version, when(v.created_at), v.primary, v.run_id]));
    table(document.getElementById("aliases"), ["alias", "action", "from", "to", "at", "actor", "reason"],
          d.history.aliases.map(a => [a.alias, a.action, a.from_version, a.to_version, when(a.at), a.actor, a.reason]));
    document.getElementById("status").textContent = `updated ${new Date(d.generated_at * 1000).toLocaleTimeString()}`;
  }

  async function refresh() {
    try {
      const response = await fetch("/dashboard/data", {credentials: "same-origin", cache: "no-store"});
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      render(await response.json());
    } catch (err) {
      document.getElementById("status").textContent = `update failed: ${err.message}`;
    }
  }
  refresh();
  setInterval(refresh, REFRESH_MS);
})();
