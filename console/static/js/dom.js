// Small DOM helpers. Text always goes in as text nodes, never as HTML, so that nothing an
// event carries can run in the page.

// h builds an element: h("a", {href: "#/", class: "x", onclick: f}, "text", child, [more]).
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (v === true) el.setAttribute(k, "");
    else el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

// replace sets the children of el.
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

// jsonView renders a JSON value as indented text with its tokens in classed spans.
export function jsonView(value) {
  const pre = h("pre", { class: "json" });
  const text = JSON.stringify(value, null, 2);
  const re = /("(?:\\.|[^"\\])*")(\s*:)?|\b(true|false|null)\b|(-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)/g;
  let last = 0;
  for (let m; (m = re.exec(text)); ) {
    pre.append(text.slice(last, m.index));
    if (m[1] !== undefined) {
      pre.append(h("span", { class: m[2] ? "json-key" : "json-string" }, m[1]));
      if (m[2]) pre.append(m[2]);
    } else if (m[3] !== undefined) {
      pre.append(h("span", { class: "json-literal" }, m[3]));
    } else {
      pre.append(h("span", { class: "json-number" }, m[4]));
    }
    last = re.lastIndex;
  }
  pre.append(text.slice(last));
  return pre;
}

// payload renders the data or metadata of an event as the server sends it: inlined JSON, or
// base64 of other bytes.
export function payload(json, base64) {
  if (json !== undefined) return jsonView(json);
  if (base64 !== undefined) {
    const n = atob(base64).length;
    return h("pre", { class: "binary" }, `${n} bytes (base64) `, base64);
  }
  return h("p", { class: "muted" }, "empty");
}

// compact is a one-line preview of an event's data.
export function compact(e, max = 160) {
  let s;
  if (e.data !== undefined) s = JSON.stringify(e.data);
  else if (e.dataBase64 !== undefined) s = `${atob(e.dataBase64).length} bytes`;
  else s = "";
  return s.length > max ? s.slice(0, max - 1) + "…" : s;
}

export function fmtTime(iso) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  const pad = (n, w = 2) => String(n).padStart(w, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

export function fmtDuration(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
}

export function fmtNumber(n) {
  return Number(n).toLocaleString("en-US");
}

// streamLink links to a stream's page.
export function streamLink(stream) {
  return h("a", { href: "#/stream/" + encodeURIComponent(stream), class: "stream" }, stream);
}

// errorBox shows a failed request.
export function errorBox(err) {
  const what = err.status ? `${err.status}${err.code ? " " + err.code : ""}: ` : "";
  return h("p", { class: "error", role: "alert" }, what + err.message);
}
