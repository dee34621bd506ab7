// The streams: a list with prefix search and counts, and each stream's events, metadata and
// live updates.

import { get, rpc, follow } from "./api.js";
import { h, replace, errorBox, payload, fmtTime, fmtNumber, streamLink, jsonView } from "./dom.js";

const LIST_PAGE = 50;
const EVENT_PAGE = 20;

export function renderList(main, params) {
  const prefix = params.get("prefix") || "";
  const after = params.get("after") || "";
  const input = h("input", { type: "search", name: "prefix", id: "stream-prefix", placeholder: "stream id prefix, e.g. cart-", value: prefix, autocomplete: "off" });
  const form = h(
    "form",
    {
      class: "search",
      id: "stream-search",
      onsubmit: (ev) => {
        ev.preventDefault();
        location.hash = "#/streams" + (input.value ? "?prefix=" + encodeURIComponent(input.value) : "");
      },
    },
    input,
    h("button", { type: "submit" }, "Search"),
  );
  const results = h("section", { id: "stream-list" }, h("p", { class: "muted" }, "Loading…"));
  replace(main, h("h1", {}, "Streams"), form, results);

  let stopped = false;
  get("/v1/streams", { prefix, after, limit: LIST_PAGE }).then(
    (list) => {
      if (stopped) return;
      if (!list.streams.length) {
        replace(results, h("p", { class: "muted" }, after ? "No more streams." : prefix ? `No stream starts with "${prefix}".` : "No streams yet."));
        return;
      }
      const rows = list.streams.map((s) =>
        h("tr", { dataset: { stream: s.stream } }, h("td", {}, streamLink(s.stream)), h("td", { class: "num count" }, fmtNumber(s.count)), h("td", { class: "num" }, fmtNumber(s.revision))),
      );
      const q = (extra) => "#/streams?" + new URLSearchParams(Object.assign(prefix ? { prefix } : {}, extra)).toString();
      replace(
        results,
        h("table", { class: "grid" }, h("thead", {}, h("tr", {}, h("th", {}, "Stream"), h("th", {}, "Events"), h("th", {}, "Last revision"))), h("tbody", {}, rows)),
        h("nav", { class: "pager" }, after ? h("a", { href: q({}) }, "First page") : null, list.next ? h("a", { href: q({ after: list.next }), id: "next-page" }, "Next page") : null),
      );
    },
    (err) => !stopped && replace(results, errorBox(err)),
  );
  return () => {
    stopped = true;
  };
}

// correlationLink links an event's correlation id to its conversation, or is null for an
// event without one.
function correlationLink(e) {
  const cid = e.metadata && typeof e.metadata === "object" ? e.metadata.$correlationId : undefined;
  if (typeof cid !== "string" || !cid) return null;
  const href = "#/correlation?" + new URLSearchParams({ event: e.id, at: e.position }).toString();
  return h("a", { class: "correlation", href, title: "the conversation this event belongs to" }, "correlation " + cid);
}

function eventCard(e, fresh) {
  return h(
    "article",
    { class: fresh ? "event fresh" : "event", dataset: { revision: e.revision, position: e.position } },
    h(
      "header",
      {},
      h("span", { class: "type" }, e.type),
      h("span", { class: "rev", title: "revision" }, "#" + e.revision),
      h("span", { class: "pos", title: "position in $all" }, "position " + e.position),
      h("time", { datetime: e.time }, fmtTime(e.time)),
      h("code", { class: "id", title: "event id" }, e.id),
      h("span", { class: "ct" }, e.contentType),
      correlationLink(e),
    ),
    h(
      "div",
      { class: "payloads" },
      h("section", { class: "data" }, h("h4", {}, "Data"), payload(e.data, e.dataBase64)),
      e.metadata !== undefined || e.metadataBase64 !== undefined ? h("section", { class: "metadata" }, h("h4", {}, "Metadata"), payload(e.metadata, e.metadataBase64)) : null,
    ),
  );
}

function showMetadata(el, stream) {
  rpc("GetMetadata", { stream }).then(
    (res) => {
      const m = res.metadata || {};
      const rows = [];
      if (m.maxCount) rows.push(["maxCount", m.maxCount]);
      if (m.maxAge) rows.push(["maxAge", m.maxAge]);
      if (m.truncateBefore) rows.push(["truncateBefore", m.truncateBefore]);
      const exp = res.expected || {};
      const version = exp.revision !== undefined ? "metadata revision " + exp.revision : "never set";
      let custom = null;
      if (m.customJson) {
        try {
          custom = jsonView(JSON.parse(m.customJson));
        } catch {
          custom = h("pre", {}, m.customJson);
        }
      }
      replace(
        el,
        h("h2", {}, "Metadata ", h("span", { class: "muted small" }, version)),
        rows.length ? h("dl", { class: "meta" }, rows.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])) : null,
        m.acl ? [h("h4", {}, "ACL"), jsonView(m.acl)] : null,
        custom ? [h("h4", {}, "Custom"), custom] : null,
        !rows.length && !m.acl && !custom ? h("p", { class: "muted" }, "No limits, ACL or custom metadata.") : null,
      );
    },
    (err) => replace(el, h("h2", {}, "Metadata"), errorBox(err)),
  );
}

export function renderStream(main, params, _cfg, stream) {
  const from = params.get("from");
  const title = h("h1", {}, h("span", { class: "muted" }, "Stream "), h("span", { id: "stream-id" }, stream));
  const summary = h("p", { id: "stream-summary", class: "muted" });
  const live = h("span", { id: "live-state", class: "state" });
  const list = h("section", { id: "events" }, h("p", { class: "muted" }, "Loading…"));
  const pager = h("nav", { class: "pager" });
  const meta = h("section", { id: "metadata", class: "panel" });
  replace(main, title, summary, h("div", { class: "stream-layout" }, h("div", {}, h("div", { class: "bar" }, h("h2", {}, "Events"), live), list, pager), meta));
  showMetadata(meta, stream);

  const base = "#/stream/" + encodeURIComponent(stream);
  let close = () => {};
  let stopped = false;
  let last = null; // revision of the newest event shown
  let info = null; // the stream in the listing: {revision, count}

  function setSummary() {
    if (!info) replace(summary, "No events.");
    else replace(summary, `${fmtNumber(info.count)} event${info.count === 1 ? "" : "s"} · last revision ${fmtNumber(info.revision)}`);
  }
  get("/v1/streams", { prefix: stream, limit: 1 }).then(
    (l) => {
      if (stopped) return;
      const s = l.streams[0];
      if (s && s.stream === stream && (!info || s.revision >= info.revision)) info = { revision: s.revision, count: s.count };
      setSummary();
    },
    () => {},
  );

  get("/v1/streams/" + encodeURIComponent(stream), { backwards: true, limit: EVENT_PAGE, from }).then(
    (page) => {
      if (stopped) return;
      replace(list, page.events.map((e) => eventCard(e, false)));
      if (!page.events.length) list.append(h("p", { class: "muted empty" }, "No events on this page."));
      if (from === null && page.events.length) last = page.events[0].revision;
      replace(pager, from !== null ? h("a", { href: base }, "Newest") : null, page.next !== undefined ? h("a", { href: base + "?from=" + page.next, id: "older" }, "Older") : null);
      if (from === null) startLive(last === null ? 0 : last + 1);
    },
    (err) => {
      if (stopped) return;
      if (err.status === 404 && from === null) {
        replace(list, h("p", { class: "muted empty" }, "This stream does not exist (yet). New events will appear here."));
        startLive(0);
        return;
      }
      replace(list, errorBox(err));
    },
  );

  function startLive(next) {
    close = follow("/v1/sse/streams/" + encodeURIComponent(stream), { from: next }, {
      onEvent: (e) => {
        list.querySelector(".empty")?.remove();
        list.prepend(eventCard(e, true));
        last = e.revision;
        info = info ? { revision: e.revision, count: info.count + 1 } : { revision: e.revision, count: 1 };
        setSummary();
      },
      onState: (state, err) => {
        replace(live, state === "live" ? "● live" : state);
        live.className = "state " + state;
        if (err && err.status !== 401) list.before(errorBox(err));
      },
    });
  }

  return () => {
    stopped = true;
    close();
  };
}
