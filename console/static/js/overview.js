// The overview: the server, charts of its rates, running subscriptions, projections, and the
// leases that say which replica runs each projection and process manager.

import { get } from "./api.js";
import { lineChart } from "./chart.js";
import { h, replace, errorBox, fmtTime, fmtDuration, fmtNumber, streamLink } from "./dom.js";

export function render(main, _params, cfg) {
  const info = h("section", { id: "server-info", class: "cards" });
  const charts = h("section", { id: "charts", class: "charts" });
  const subs = h("section", { id: "subscriptions" });
  const projs = h("section", { id: "projections" });
  const leases = h("section", { id: "leases" });
  replace(main, h("h1", {}, "Overview"), info, charts, h("h2", {}, "Subscriptions"), subs, h("h2", {}, "Projections"), projs, h("h2", {}, "Leases"), leases);

  let stopped = false;
  let timer;
  async function poll() {
    const [st, pr] = await Promise.allSettled([get("/v1/stats"), get("/v1/projections")]);
    if (stopped) return;
    if (st.status === "fulfilled") {
      showInfo(info, st.value);
      showCharts(charts, st.value.rates);
      showSubscriptions(subs, st.value);
    } else {
      const e = st.reason;
      const note = e.status === 403 ? h("p", { class: "muted" }, "The server's stats need the admin role.") : errorBox(e);
      replace(info, note);
      replace(charts);
      replace(subs);
    }
    if (pr.status === "fulfilled") {
      showProjections(projs, pr.value);
      showLeases(leases, pr.value.leases || []);
    } else {
      replace(projs, errorBox(pr.reason));
      replace(leases);
    }
    timer = setTimeout(poll, cfg.pollMillis);
  }
  poll();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}

function card(label, value, id) {
  return h("div", { class: "card", id }, h("div", { class: "card-label" }, label), h("div", { class: "card-value" }, value));
}

function showInfo(el, st) {
  const up = (Date.parse(st.time) - Date.parse(st.startTime)) / 1000;
  const t = st.totals;
  replace(
    el,
    card("Head position", fmtNumber(st.headPosition), "head-position"),
    card("Events appended", fmtNumber(t.eventsAppended), "events-appended"),
    card("Appends", fmtNumber(t.appends)),
    card("Events read", fmtNumber(t.eventsRead)),
    card("Events delivered", fmtNumber(t.eventsDelivered)),
    card("Subscriptions", fmtNumber(st.subscriptionCount), "subscription-count"),
    card("Up", fmtDuration(up)),
    card("Server", `${st.version} · ${st.backend}`),
  );
}

function showCharts(el, r) {
  replace(
    el,
    lineChart("Appends per second", [
      { name: "events appended", values: r.eventsAppended, cls: "s1" },
      { name: "append calls", values: r.appends, cls: "s2" },
    ]),
    lineChart("Reads per second", [
      { name: "events read", values: r.eventsRead, cls: "s1" },
      { name: "events delivered", values: r.eventsDelivered, cls: "s3" },
      { name: "read calls", values: r.reads, cls: "s2" },
    ]),
  );
}

function filterText(f) {
  if (!f) return "";
  const parts = [];
  if (f.streamPrefixes && f.streamPrefixes.length) parts.push("prefix " + f.streamPrefixes.join(", "));
  if (f.categories && f.categories.length) parts.push("category " + f.categories.join(", "));
  if (f.eventTypes && f.eventTypes.length) parts.push("type " + f.eventTypes.join(", "));
  return parts.join("; ");
}

function lagCell(events, seconds) {
  return h("td", { class: events > 0 ? "num lag" : "num" }, events > 0 ? `${fmtNumber(events)} (${seconds.toFixed(1)}s)` : "0");
}

function showSubscriptions(el, st) {
  if (!st.subscriptions.length) {
    replace(el, h("p", { class: "muted" }, "No subscription is running."));
    return;
  }
  const rows = st.subscriptions.map((s) =>
    h(
      "tr",
      { dataset: { id: s.id } },
      h("td", { class: "num" }, s.id),
      h("td", {}, s.protocol),
      h("td", {}, s.stream === "$all" ? "$all" : streamLink(s.stream)),
      h("td", {}, filterText(s.filter)),
      h("td", {}, s.peer),
      h("td", {}, fmtTime(s.started)),
      h("td", { class: "num" }, fmtNumber(s.next)),
      h("td", { class: "num" }, fmtNumber(s.delivered)),
      lagCell(s.lagEvents, s.lagSeconds),
    ),
  );
  const more = st.subscriptionCount > st.subscriptions.length ? h("p", { class: "muted" }, `The oldest ${st.subscriptions.length} of ${st.subscriptionCount}.`) : null;
  replace(
    el,
    h(
      "table",
      { class: "grid" },
      h("thead", {}, h("tr", {}, ["#", "Protocol", "Stream", "Filter", "Peer", "Started", "Next", "Delivered", "Lag"].map((c) => h("th", {}, c)))),
      h("tbody", {}, rows),
    ),
    more,
  );
}

function showProjections(el, pr) {
  if (!pr.configured) {
    replace(el, h("p", { class: "muted" }, "This server reports no projections."));
    return;
  }
  if (!pr.projections.length) {
    replace(el, h("p", { class: "muted" }, "No projection."));
    return;
  }
  const rows = pr.projections.map((p) =>
    h(
      "tr",
      { dataset: { name: p.name } },
      h("td", {}, p.name),
      h("td", {}, h("span", { class: "badge " + p.state }, p.state + (p.rebuilding ? " (rebuilding)" : ""))),
      h("td", { class: "num" }, fmtNumber(p.position)),
      h("td", { class: "num" }, fmtNumber(p.head)),
      lagCell(p.lagEvents, p.lagSeconds),
      h("td", { class: "holder" }, p.lease ? p.lease.holder : h("span", { class: "muted" }, "—")),
      h(
        "td",
        {},
        p.error || "",
        p.failedEvent ? h("div", { class: "muted" }, "at ", streamLink(p.failedEvent.stream), ` #${p.failedEvent.revision} (${p.failedEvent.type}, position ${p.failedEvent.position})`) : null,
      ),
    ),
  );
  replace(
    el,
    h(
      "table",
      { class: "grid" },
      h("thead", {}, h("tr", {}, ["Name", "State", "Position", "Head", "Lag", "Held by", "Error"].map((c) => h("th", {}, c)))),
      h("tbody", {}, rows),
    ),
  );
}

// showLeases lists the leases of the runners ("projection/<name>", "process/<name>"): which
// replica holds each, with its fencing token and when it runs out unless renewed.
function showLeases(el, leases) {
  if (!leases.length) {
    replace(el, h("p", { class: "muted" }, "No replica holds a lease on a projection or a process manager."));
    return;
  }
  const rows = leases.map((l) =>
    h(
      "tr",
      { dataset: { name: l.name } },
      h("td", {}, l.name),
      h("td", { class: "holder" }, l.holder),
      // The token is a string: it exceeds the integers JavaScript holds exactly.
      h("td", { class: "num token" }, l.token),
      h("td", {}, fmtTime(l.acquired)),
      h("td", { class: "expires" }, fmtTime(l.expires)),
    ),
  );
  replace(
    el,
    h(
      "table",
      { class: "grid" },
      h("thead", {}, h("tr", {}, ["Name", "Holder", "Token", "Acquired", "Expires"].map((c) => h("th", {}, c)))),
      h("tbody", {}, rows),
    ),
  );
}
