// The relays (to Kafka and NATS JetStream) and ingests (from them) that the server runs: a
// table of each, asked for again every poll interval while the view is shown.
//
// The figures come from GET /v1/relays (relay.Status and ingest.Status as JSON). A relay's
// checkpoint, head and lag are positions of the log; its rate is events acknowledged per
// second; published, errors and the ingests' counters count since the server started.

import { get } from "./api.js";
import { h, replace, errorBox, fmtNumber, fmtTime } from "./dom.js";

// badgeClass maps a state to one of the console's badge colours.
function badgeClass(state) {
  switch (state) {
    case "running":
      return "live";
    case "failed":
      return "failed";
    case "retrying":
    case "connecting":
      return "catching-up";
  }
  return "";
}

function stateCell(s) {
  return h("td", { class: "bridge-state" }, h("span", { class: "badge " + badgeClass(s.state) }, s.state || "unknown"));
}

// num is a number's cell of class cls; with warn, a number above 0 is marked (class "lag").
function num(cls, n, warn) {
  return h("td", { class: "num " + cls + (warn && n > 0 ? " lag" : "") }, fmtNumber(n || 0));
}

function errorCell(s) {
  if (!s.lastError) return h("td", { class: "last-error muted" }, "");
  return h(
    "td",
    { class: "last-error" },
    h("span", { class: "error-text" }, s.lastError),
    s.lastErrorTime ? h("div", { class: "muted" }, fmtTime(s.lastErrorTime)) : null,
  );
}

function table(id, heads, rows) {
  return h(
    "table",
    { class: "grid", id },
    h("thead", {}, h("tr", {}, heads.map((c) => h("th", {}, c)))),
    h("tbody", {}, rows),
  );
}

function relayRows(relays) {
  return relays.map((r) =>
    h(
      "tr",
      { dataset: { name: r.name } },
      h("td", { class: "name" }, r.name),
      stateCell(r),
      h("td", { class: "holder" }, r.holder || ""),
      h("td", { class: "target" }, r.target || ""),
      num("checkpoint", r.checkpoint),
      num("head", r.head),
      num("lag-events", r.lag, true),
      h("td", { class: "num lag-seconds" + (r.lagSeconds > 1 ? " lag" : "") }, (r.lagSeconds || 0).toFixed(1)),
      h("td", { class: "num rate" }, (r.rate || 0).toFixed(1)),
      num("published", r.published),
      num("errors", r.errors, true),
      errorCell(r),
    ),
  );
}

function offsetsText(offsets) {
  if (!offsets) return "";
  return Object.keys(offsets)
    .sort()
    .map((k) => `${k}@${offsets[k]}`)
    .join(" ");
}

function ingestRows(ingests) {
  return ingests.map((i) =>
    h(
      "tr",
      { dataset: { name: i.name } },
      h("td", { class: "name" }, i.name),
      stateCell(i),
      h("td", { class: "holder" }, i.holder || ""),
      h("td", { class: "offsets" }, offsetsText(i.offsets)),
      h("td", { class: "num rate" }, (i.rate || 0).toFixed(1)),
      num("appended", i.appended),
      num("duplicates", i.duplicates),
      num("errors", i.errors, true),
      errorCell(i),
    ),
  );
}

export function render(main, _params, cfg) {
  const relays = h("section", { id: "relays" }, h("p", { class: "muted" }, "Loading…"));
  const ingests = h("section", { id: "ingests" });
  replace(main, h("h1", {}, "Relays"), relays, h("h2", {}, "Ingests"), ingests);

  let stopped = false;
  let timer;
  async function load() {
    let res;
    try {
      res = await get("/v1/relays");
    } catch (err) {
      if (!stopped) replace(relays, errorBox(err));
      return;
    }
    if (stopped) return;
    if (!res.configured) {
      replace(relays, h("p", { class: "muted" }, "This server runs no relay. List them under ", h("code", {}, "relays:"), " in its config file, or run ", h("code", {}, "annals relay"), " beside it (docs/bridges.md)."));
      replace(ingests);
      return;
    }
    replace(
      relays,
      res.relays.length
        ? table("relays-table", ["Name", "State", "Holder", "Target", "Checkpoint", "Head", "Lag", "Lag (s)", "Rate (/s)", "Published", "Errors", "Last error"], relayRows(res.relays))
        : h("p", { class: "muted" }, "No relay."),
    );
    replace(
      ingests,
      res.ingests.length
        ? table("ingests-table", ["Name", "State", "Holder", "Offsets", "Rate (/s)", "Appended", "Duplicates", "Errors", "Last error"], ingestRows(res.ingests))
        : h("p", { class: "muted" }, "No ingest."),
    );
  }
  async function tick() {
    await load();
    if (!stopped) timer = setTimeout(tick, cfg.pollMillis);
  }
  tick();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
