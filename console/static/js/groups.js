// The consumer groups: a table of the groups with their figures, and each group's settings,
// figures, consumers and parked events, with a button that replays the parked events. Both
// views ask the server again every poll interval while they are shown.
//
// The figures come from GET /v1/groups (groups.Info as JSON: durations in nanoseconds);
// replaying calls the GroupService's ReplayParked; the parked events are the events of the
// group's parked stream ("$group-parked-<name>"), read with the ordinary read route.

import { get, rpc } from "./api.js";
import { h, replace, errorBox, fmtTime, fmtNumber, streamLink, compact } from "./dom.js";

// PARKED_PAGE is how many parked events the group's page lists, newest first.
const PARKED_PAGE = 20;

// parkedStream is the system stream that keeps the parked events of group name.
export function parkedStream(name) {
  return "$group-parked-" + name;
}

function groupLink(name) {
  return h("a", { href: "#/group/" + encodeURIComponent(name), class: "group" }, name);
}

// withDefaults fills in the defaults of the settings' zero fields, as groups.Settings does.
function withDefaults(s) {
  const d = Object.assign({}, s);
  d.start = d.start && d.start.kind ? d.start : { kind: "beginning" };
  d.strategy = d.strategy || "round-robin";
  if (d.strategy === "pinned-by-key" && !d.pinKey) d.pinKey = "$correlationId";
  d.messageTimeout = d.messageTimeout || 30e9;
  d.maxRetries = d.maxRetries || 10;
  d.checkpointInterval = d.checkpointInterval || 1e9;
  d.buffer = d.buffer || 4096;
  return d;
}

// filterText describes a $all group's filter ({StreamPrefixes, Categories, EventTypes}, or
// the same in lower camel case).
function filterText(f) {
  if (!f) return "";
  const parts = [];
  const list = (a, b) => [...(a || []), ...(b || [])].join(", ");
  const cats = list(f.Categories, f.categories);
  const types = list(f.EventTypes, f.eventTypes);
  const prefixes = list(f.StreamPrefixes, f.streamPrefixes);
  if (cats) parts.push("category " + cats);
  if (types) parts.push("type " + types);
  if (prefixes) parts.push("prefix " + prefixes);
  return parts.join("; ");
}

function targetCell(s) {
  const f = filterText(s.filter);
  return h("td", { class: "stream" }, s.stream === "$all" ? "$all" : streamLink(s.stream), f ? h("div", { class: "muted" }, f) : null);
}

// fmtNanos shows a duration in nanoseconds as Go prints the common ones: 30s, 1m30s, 250ms.
function fmtNanos(ns) {
  const ms = ns / 1e6;
  if (ms < 1000) return `${ms}ms`;
  const s = ms / 1000;
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  const rest = s - m * 60;
  return rest ? `${m}m${rest}s` : `${m}m`;
}

function num(cls, n, warn) {
  return h("td", { class: "num " + cls + (warn && n > 0 ? " lag" : "") }, fmtNumber(n || 0));
}

// poller calls load now and then every interval after the last call ended, until stopped;
// now() calls it again at once (after the call under way, if any).
function poller(cfg, load) {
  let stopped = false;
  let running = false;
  let again = false;
  let timer;
  async function tick() {
    running = true;
    try {
      await load(() => stopped);
    } finally {
      running = false;
    }
    if (stopped) return;
    if (again) {
      again = false;
      tick();
      return;
    }
    timer = setTimeout(tick, cfg.pollMillis);
  }
  tick();
  return {
    stop() {
      stopped = true;
      clearTimeout(timer);
    },
    now() {
      if (stopped) return;
      if (running) {
        again = true;
        return;
      }
      clearTimeout(timer);
      tick();
    },
  };
}

export function renderList(main, _params, cfg) {
  const list = h("section", { id: "groups-list" }, h("p", { class: "muted" }, "Loading…"));
  replace(main, h("h1", {}, "Consumer groups"), list);
  const p = poller(cfg, async (stopped) => {
    let res;
    try {
      res = await get("/v1/groups");
    } catch (err) {
      if (!stopped()) replace(list, errorBox(err));
      return;
    }
    if (stopped()) return;
    if (!res.available) {
      replace(list, h("p", { class: "muted" }, "This server's store does not keep consumer groups."));
      return;
    }
    if (!res.groups.length) {
      replace(list, h("p", { class: "muted" }, "No consumer group. ", h("code", {}, "annals groups create NAME --stream STREAM"), " makes one."));
      return;
    }
    const rows = res.groups.map((g) => {
      const s = withDefaults(g.settings);
      return h(
        "tr",
        { dataset: { name: g.name } },
        h("td", {}, groupLink(g.name)),
        targetCell(s),
        h("td", { class: "strategy" }, s.strategy),
        num("consumers", (g.consumers || []).length),
        num("in-flight", g.inFlight),
        num("lag", g.lag, true),
        num("parked", g.parked, true),
      );
    });
    replace(
      list,
      h(
        "table",
        { class: "grid" },
        h("thead", {}, h("tr", {}, ["Name", "Stream", "Strategy", "Consumers", "In flight", "Lag", "Parked"].map((c) => h("th", {}, c)))),
        h("tbody", {}, rows),
      ),
    );
  });
  return () => p.stop();
}

function card(label, value, id) {
  return h("div", { class: "card", id }, h("div", { class: "card-label" }, label), h("div", { class: "card-value" }, value));
}

export function renderGroup(main, _params, cfg, name) {
  const figures = h("section", { id: "group-figures", class: "cards" }, h("p", { class: "muted" }, "Loading…"));
  const settings = h("section", { id: "group-settings", class: "panel" });
  const consumers = h("section", { id: "group-consumers" });
  const result = h("span", { id: "replay-result", class: "muted", role: "status" });
  const button = h("button", { type: "button", id: "replay-parked", disabled: true }, "Replay parked");
  const parked = h("section", { id: "parked-events" });
  replace(
    main,
    h("h1", {}, h("span", { class: "muted" }, "Group "), h("span", { id: "group-name" }, name)),
    figures,
    h("div", { class: "stream-layout" }, h("div", {}, h("h2", {}, "Consumers"), consumers, h("div", { class: "bar" }, h("h2", {}, "Parked events"), button, result), parked), settings),
  );

  let def = null; // the group's definition, once loaded
  const p = poller(cfg, async (stopped) => {
    let res;
    try {
      res = await get("/v1/groups");
    } catch (err) {
      if (!stopped()) replace(figures, errorBox(err));
      return;
    }
    if (stopped()) return;
    const g = (res.groups || []).find((x) => x.name === name);
    if (!g) {
      def = null;
      button.disabled = true;
      replace(figures, h("p", { class: "error", role: "alert" }, res.available ? `No group ${name}.` : "This server's store does not keep consumer groups."));
      replace(settings);
      replace(consumers);
      replace(parked);
      return;
    }
    def = g;
    button.disabled = !g.parked;
    showFigures(figures, g);
    showSettings(settings, g);
    showConsumers(consumers, g.consumers || []);
    await showParked(parked, g, stopped);
  });

  button.addEventListener("click", async () => {
    if (!def) return;
    button.disabled = true;
    try {
      const res = await rpc("ReplayParked", { name }, "annals.v1.GroupService");
      const n = (res && res.replayed) || 0;
      replace(result, `Gave back ${fmtNumber(n)} parked event${n === 1 ? "" : "s"} for delivery.`);
      result.dataset.replayed = String(n);
    } catch (err) {
      replace(result, errorBox(err));
    }
    p.now();
  });
  return () => p.stop();
}

function showFigures(el, g) {
  const s = withDefaults(g.settings);
  replace(
    el,
    card("Stream", s.stream + (filterText(s.filter) ? " (" + filterText(s.filter) + ")" : ""), "group-stream"),
    card("Strategy", s.strategy, "group-strategy"),
    card("Consumers", fmtNumber((g.consumers || []).length), "group-consumer-count"),
    card("In flight", fmtNumber(g.inFlight || 0), "group-in-flight"),
    card("Lag", fmtNumber(g.lag || 0), "group-lag"),
    card("Parked", fmtNumber(g.parked || 0), "group-parked"),
    card("Checkpoint", fmtNumber(g.checkpoint || 0), "group-checkpoint"),
    card("Buffered", fmtNumber(g.buffered || 0)),
    card("Delivered", fmtNumber(g.delivered || 0), "group-delivered"),
    card("Acked", fmtNumber(g.acked || 0), "group-acked"),
    card("Retries", fmtNumber(g.retries || 0)),
    card("Parked in all", fmtNumber(g.parkedTotal || 0)),
    card("Skipped", fmtNumber(g.skipped || 0)),
  );
}

function showSettings(el, g) {
  const s = withDefaults(g.settings);
  const rows = [
    ["stream", s.stream],
    ["filter", filterText(s.filter) || "none"],
    ["start", s.start.kind === "position" ? `position ${s.start.from || 0}` : s.start.kind],
    ["strategy", s.strategy],
  ];
  if (s.strategy === "pinned-by-key") rows.push(["pin key", s.pinKey]);
  rows.push(
    ["message timeout", fmtNanos(s.messageTimeout)],
    ["max retries", s.maxRetries === -1 ? "none (park on the first failure)" : String(s.maxRetries)],
    ["checkpoint interval", fmtNanos(s.checkpointInterval)],
    ["buffer", fmtNumber(s.buffer)],
    ["created at position", fmtNumber(g.created)],
  );
  replace(
    el,
    h("h2", {}, "Settings"),
    h(
      "dl",
      { class: "meta" },
      rows.map(([k, v]) => [h("dt", {}, k), h("dd", { dataset: { setting: k } }, v)]),
    ),
  );
}

function showConsumers(el, list) {
  if (!list.length) {
    replace(el, h("p", { class: "muted" }, "No consumer is joined."));
    return;
  }
  const rows = list.map((c) =>
    h(
      "tr",
      { dataset: { id: c.id } },
      h("td", { class: "name" }, c.name),
      h("td", { class: "muted consumer-id" }, c.id),
      num("window", c.window),
      num("in-flight", c.inFlight),
      num("delivered", c.delivered),
      num("acked", c.acked),
      num("nacked", c.nacked),
      h("td", {}, fmtTime(c.joined)),
    ),
  );
  replace(
    el,
    h(
      "table",
      { class: "grid" },
      h("thead", {}, h("tr", {}, ["Name", "ID", "Window", "In flight", "Delivered", "Acked", "Nacked", "Joined"].map((c) => h("th", {}, c)))),
      h("tbody", {}, rows),
    ),
  );
}

// parkedRecord reads the metadata of a parked event: where the original was and why it was
// parked ({created, id, stream, type, revision, position, time, reason}).
function parkedRecord(e) {
  try {
    if (e.metadata !== undefined) return e.metadata;
    if (e.metadataBase64 !== undefined) return JSON.parse(atob(e.metadataBase64));
  } catch {
    // not a record the group wrote
  }
  return null;
}

// showParked lists the newest parked events of group g. The parked stream keeps every event
// ever parked: g.parked of this creation's, the newest, wait for a replay; the older ones
// were replayed, and those of an earlier group of the same name no longer count.
async function showParked(el, g, stopped) {
  let page;
  try {
    page = await get("/v1/streams/" + encodeURIComponent(parkedStream(g.name)), { backwards: true, limit: PARKED_PAGE });
  } catch (err) {
    if (stopped()) return;
    if (err.status === 404) replace(el, h("p", { class: "muted empty" }, "No event was ever parked."));
    else replace(el, errorBox(err));
    return;
  }
  if (stopped()) return;
  if (!page.events.length) {
    replace(el, h("p", { class: "muted empty" }, "No event was ever parked."));
    return;
  }
  let waiting = g.parked || 0;
  const rows = page.events.map((e) => {
    const rec = parkedRecord(e) || {};
    let state = "earlier group";
    if (rec.created === g.created) {
      state = waiting > 0 ? "parked" : "replayed";
      waiting--;
    }
    return h(
      "tr",
      { class: "parked-row " + state.replace(" ", "-"), dataset: { revision: e.revision, state } },
      h("td", {}, fmtTime(e.time)),
      h("td", {}, rec.stream ? [streamLink(rec.stream), ` #${rec.revision}`] : "?"),
      h("td", { class: "type" }, rec.type || e.type),
      h("td", { class: "num" }, rec.position !== undefined ? fmtNumber(rec.position) : ""),
      h("td", { class: "reason" }, rec.reason || ""),
      h("td", {}, h("span", { class: "badge " + state.replace(" ", "-") }, state)),
      h("td", { class: "preview" }, compact(e, 80)),
    );
  });
  replace(
    el,
    h(
      "table",
      { class: "grid parked" },
      h("thead", {}, h("tr", {}, ["Parked", "Event", "Type", "Position", "Reason", "State", "Data"].map((c) => h("th", {}, c)))),
      h("tbody", {}, rows),
    ),
    page.next !== undefined ? h("p", { class: "muted" }, `The newest ${PARKED_PAGE}; `, streamLink(parkedStream(g.name)), " has them all.") : null,
  );
}
