// The conversation of an event: every event of its correlation id, across streams, as a tree
// of what caused what (GET /v1/correlation). Reached from an event's correlation id in the
// streams view, or by entering an event id or a correlation id.
//
//   #/correlation?event=<id>&at=<position>   the conversation of that event
//   #/correlation?correlation=<id>           the conversation of that correlation id

import { get } from "./api.js";
import { h, replace, errorBox, fmtTime, fmtNumber, streamLink } from "./dom.js";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

function searchForm(value) {
  const input = h("input", { type: "search", name: "id", id: "correlation-id", placeholder: "an event id or a correlation id", value, autocomplete: "off" });
  return h(
    "form",
    {
      class: "search",
      id: "correlation-search",
      onsubmit: (ev) => {
        ev.preventDefault();
        const v = input.value.trim();
        if (v) location.hash = "#/correlation?correlation=" + encodeURIComponent(v);
      },
    },
    input,
    h("button", { type: "submit" }, "Show"),
  );
}

// node renders one event of the tree and, nested under it, the events it caused.
function node(n, selected, root) {
  const hiddenCause = root && n.causationId;
  return h(
    "li",
    { class: n.id === selected ? "node selected" : "node", dataset: { id: n.id, position: n.position } },
    h(
      "div",
      { class: "line" },
      h("time", { datetime: n.time }, fmtTime(n.time)),
      " ",
      streamLink(n.stream),
      " ",
      h("span", { class: "type" }, n.type),
      " ",
      h("span", { class: "rev muted", title: "revision" }, "#" + n.revision),
      " ",
      h("span", { class: "pos muted", title: "position in $all" }, "@" + n.position),
      n.id === selected ? h("strong", { class: "here" }, " ◀ this event") : null,
      hiddenCause ? h("span", { class: "cause muted", title: "its cause is outside the window or not readable" }, " · caused by " + n.causationId + " (not shown)") : null,
    ),
    n.children && n.children.length ? h("ul", { class: "tree" }, n.children.map((c) => node(c, selected, false))) : null,
  );
}

export function render(main, params) {
  const event = params.get("event") || "";
  const correlation = params.get("correlation") || "";
  const at = params.get("at") || "";
  const body = h("section", { id: "correlation" });
  replace(main, h("h1", {}, "Conversation"), searchForm(correlation || event), body);
  if (!event && !correlation) {
    replace(body, h("p", { class: "muted" }, "Enter an event id or a correlation id, or follow the correlation id of an event in the streams view."));
    return () => {};
  }
  replace(body, h("p", { class: "muted" }, "Loading…"));
  let stopped = false;
  // An id typed in the form may be an event's: ask for it as a correlation id first, then as
  // an event id when nothing matched.
  const ask = event ? get("/v1/correlation", { event, at }) : get("/v1/correlation", { correlation });
  ask
    .then((c) => (!event && !c.events && UUID.test(correlation) ? get("/v1/correlation", { event: correlation }).catch(() => c) : c))
    .then(
      (c) => {
        if (stopped) return;
        const notes = [];
        if (c.bounded) notes.push(h("p", { class: "warning", id: "correlation-bounded" }, `Only positions ${fmtNumber(c.from)} to ${fmtNumber(c.to)} of the log were scanned (${fmtNumber(c.scanned)} events): events of this conversation may lie outside.`));
        if (c.truncated) notes.push(h("p", { class: "warning", id: "correlation-truncated" }, `More than ${fmtNumber(c.events)} events matched; the others are left out.`));
        replace(
          body,
          h("p", { id: "correlation-summary", class: "muted" }, "Correlation ", h("code", {}, c.correlationId), ` · ${fmtNumber(c.events)} event${c.events === 1 ? "" : "s"}`),
          notes,
          c.events ? h("ul", { class: "tree", id: "correlation-tree" }, c.roots.map((n) => node(n, event, true))) : h("p", { class: "muted empty" }, "No event of this conversation in the window scanned."),
        );
      },
      (err) => !stopped && replace(body, errorBox(err)),
    );
  return () => {
    stopped = true;
  };
}
