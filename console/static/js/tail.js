// The live tail of $all: every new event as it is appended, with filters.

import { follow } from "./api.js";
import { h, replace, errorBox, compact, fmtTime, streamLink, payload } from "./dom.js";

const MAX_ROWS = 500;

const plural = (n) => `${n} event${n === 1 ? "" : "s"}`;

function list(v) {
  return (v || "")
    .split(",")
    .map((x) => x.trim())
    .filter(Boolean);
}

export function render(main, params) {
  const filters = { prefix: params.get("prefix") || "", category: params.get("category") || "", type: params.get("type") || "" };
  const field = (name, label, hint) =>
    h("label", {}, label, h("input", { type: "text", name, id: "tail-" + name, value: filters[name], placeholder: hint, autocomplete: "off" }));
  const form = h(
    "form",
    {
      class: "filters",
      id: "tail-filters",
      onsubmit: (ev) => {
        ev.preventDefault();
        const q = new URLSearchParams();
        for (const k of Object.keys(filters)) {
          const v = form.elements[k].value.trim();
          if (v) q.set(k, v);
        }
        location.hash = "#/tail" + (q.toString() ? "?" + q : "");
      },
    },
    field("prefix", "Stream prefixes", "cart-, order-"),
    field("category", "Categories", "cart"),
    field("type", "Event types", "ItemAdded"),
    h("button", { type: "submit" }, "Apply"),
  );
  const state = h("span", { id: "tail-state", class: "state" }, "connecting");
  const count = h("span", { id: "tail-count", class: "muted" }, "0 events");
  const pause = h("button", { type: "button", id: "tail-pause" }, "Pause");
  const clear = h("button", { type: "button", id: "tail-clear" }, "Clear");
  const problems = h("div", { id: "tail-error" });
  const body = h("tbody", { id: "tail-rows" });
  const table = h(
    "table",
    { class: "grid tail" },
    h("thead", {}, h("tr", {}, ["Position", "Time", "Stream", "Rev", "Type", "Data"].map((c) => h("th", {}, c)))),
    body,
  );
  replace(main, h("h1", {}, "Live tail of $all"), form, h("div", { class: "bar" }, state, count, pause, clear), problems, table);

  let n = 0;
  let next = null; // the position after the last event shown, to resume a pause with no gap
  let close = () => {};
  const sel = { prefix: list(filters.prefix), category: list(filters.category), type: list(filters.type) };

  function row(e) {
    const full = h("tr", { class: "detail", hidden: true }, h("td", { colspan: 6 }, payload(e.data, e.dataBase64), e.metadata !== undefined ? [h("h4", {}, "Metadata"), payload(e.metadata, e.metadataBase64)] : null));
    const tr = h(
      "tr",
      {
        class: "event-row fresh",
        dataset: { position: e.position, stream: e.stream, type: e.type },
        onclick: (ev) => {
          if (ev.target.closest("a")) return;
          full.hidden = !full.hidden;
        },
      },
      h("td", { class: "num" }, e.position),
      h("td", {}, fmtTime(e.time)),
      h("td", {}, streamLink(e.stream)),
      h("td", { class: "num" }, e.revision),
      h("td", { class: "type" }, e.type),
      h("td", { class: "preview" }, compact(e)),
    );
    return [tr, full];
  }

  function start() {
    close = follow("/v1/sse/all", Object.assign({ from: next === null ? "end" : next }, sel), {
      onEvent: (e) => {
        body.prepend(...row(e));
        while (body.rows.length > 2 * MAX_ROWS) body.lastElementChild.remove();
        n++;
        next = e.position + 1;
        replace(count, plural(n));
      },
      onState: (s, err) => {
        replace(state, s === "live" ? "● live" : s);
        state.className = "state " + s;
        if (err && err.status !== 401) replace(problems, errorBox(err));
      },
    });
  }
  pause.addEventListener("click", () => {
    if (pause.textContent === "Pause") {
      close();
      replace(state, "paused");
      state.className = "state paused";
      pause.textContent = "Resume";
    } else {
      pause.textContent = "Pause";
      replace(problems);
      start();
    }
  });
  clear.addEventListener("click", () => {
    replace(body);
    n = 0;
    replace(count, plural(0));
  });
  start();
  return () => close();
}
