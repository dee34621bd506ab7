// The console's entry point: a router over the location's hash.
//
//   #/                      overview (server, charts, subscriptions, projections, leases)
//   #/streams?prefix=&after= the list of streams
//   #/stream/<id>?from=N     a stream's events (newest first) and metadata
//   #/tail?prefix=&category=&type=  the live tail of $all
//   #/groups                 the consumer groups
//   #/group/<name>           a group's settings, figures, consumers and parked events
//   #/correlation?event=&at= | ?correlation=  an event's conversation (correlation chain)
//   #/relays                 the relays (to Kafka, NATS) and ingests the server runs
//
// Each view's render returns a function that stops what it started (timers, event streams).

import { token, user, forget } from "./api.js";
import * as overview from "./overview.js";
import * as streams from "./streams.js";
import * as tail from "./tail.js";
import * as groups from "./groups.js";
import * as correlation from "./correlation.js";
import * as relays from "./relays.js";
import * as loginView from "./login.js";

const cfg = JSON.parse(document.querySelector('meta[name="annals-config"]').content);
const main = document.getElementById("main");
const logout = document.getElementById("logout");
const whoami = document.getElementById("whoami");

let stop = () => {};
let loggingIn = false;

function parse() {
  const raw = location.hash.replace(/^#/, "") || "/";
  const [path, query] = raw.split(/\?(.*)/s);
  return { path, params: new URLSearchParams(query || "") };
}

function route() {
  stop();
  stop = () => {};
  loggingIn = false;
  logout.hidden = !token();
  whoami.textContent = user() || "";
  const { path, params } = parse();
  let name = "overview";
  if (path === "/streams") {
    name = "streams";
    stop = streams.renderList(main, params, cfg) || stop;
  } else if (path.startsWith("/stream/")) {
    name = "streams";
    stop = streams.renderStream(main, params, cfg, decodeURIComponent(path.slice("/stream/".length))) || stop;
  } else if (path === "/correlation") {
    name = "correlation";
    stop = correlation.render(main, params, cfg) || stop;
  } else if (path === "/tail") {
    name = "tail";
    stop = tail.render(main, params, cfg) || stop;
  } else if (path === "/relays") {
    name = "relays";
    stop = relays.render(main, params, cfg) || stop;
  } else if (path === "/groups") {
    name = "groups";
    stop = groups.renderList(main, params, cfg) || stop;
  } else if (path.startsWith("/group/")) {
    name = "groups";
    stop = groups.renderGroup(main, params, cfg, decodeURIComponent(path.slice("/group/".length))) || stop;
  } else {
    stop = overview.render(main, params, cfg) || stop;
  }
  for (const a of document.querySelectorAll("#nav a")) a.classList.toggle("active", a.dataset.route === name);
  document.title = cfg.title;
}

// A 401 anywhere: stop the view and ask for credentials, then come back to it.
window.addEventListener("annals:unauthorized", () => {
  if (loggingIn) return;
  stop();
  stop = () => {};
  loggingIn = true;
  logout.hidden = true;
  whoami.textContent = "";
  document.title = "Log in · " + cfg.title;
  loginView.render(main, route);
});

logout.addEventListener("click", () => {
  forget();
  route();
});

window.addEventListener("hashchange", route);
route();
