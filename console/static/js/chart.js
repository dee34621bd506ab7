// A line chart of per-second series, drawn as SVG.

const SVG = "http://www.w3.org/2000/svg";

function s(tag, attrs, text) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = text;
  return el;
}

// niceMax rounds v up to 1, 2 or 5 times a power of ten (at least 1).
function niceMax(v) {
  if (v <= 1) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

// lineChart draws series ([{name, values, cls}], values per second, oldest first) into a
// new figure with a title, a y axis from 0 and a legend giving each series' last value.
export function lineChart(title, series) {
  const W = 560, H = 180, L = 48, R = 8, T = 10, B = 22;
  const n = Math.max(...series.map((x) => x.values.length), 2);
  const top = niceMax(Math.max(0, ...series.flatMap((x) => x.values)));
  const x = (i) => L + ((W - L - R) * i) / (n - 1);
  const y = (v) => T + (H - T - B) * (1 - v / top);

  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img", "aria-label": title });
  for (const f of [0, 0.5, 1]) {
    const v = top * f;
    svg.append(s("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), class: "grid" }));
    svg.append(s("text", { x: L - 6, y: y(v) + 4, class: "axis", "text-anchor": "end" }, fmtRate(v)));
  }
  svg.append(s("text", { x: L, y: H - 6, class: "axis" }, `-${n}s`));
  svg.append(s("text", { x: W - R, y: H - 6, class: "axis", "text-anchor": "end" }, "now"));
  for (const ser of series) {
    const pts = ser.values.map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(" ");
    svg.append(s("polyline", { points: pts, class: "line " + ser.cls, "data-series": ser.name }));
  }

  const legend = document.createElement("ul");
  legend.className = "legend";
  for (const ser of series) {
    const last = ser.values.length ? ser.values[ser.values.length - 1] : 0;
    const total = ser.values.reduce((a, b) => a + b, 0);
    const li = document.createElement("li");
    li.className = ser.cls;
    li.dataset.series = ser.name;
    li.dataset.last = String(last);
    li.dataset.total = String(total);
    li.textContent = `${ser.name}: ${fmtRate(last)}/s (last minute ${total})`;
    legend.append(li);
  }

  const fig = document.createElement("figure");
  fig.className = "chart-box";
  const cap = document.createElement("figcaption");
  cap.textContent = title;
  fig.append(cap, svg, legend);
  return fig;
}

function fmtRate(v) {
  if (v >= 1e6) return (v / 1e6).toFixed(v >= 1e7 ? 0 : 1) + "M";
  if (v >= 1e3) return (v / 1e3).toFixed(v >= 1e4 ? 0 : 1) + "k";
  return String(Math.round(v * 10) / 10);
}
