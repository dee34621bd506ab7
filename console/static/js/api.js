// The server's API as the console uses it: JSON over fetch with the bearer token, and
// EventSource with the token in the query (EventSource cannot set headers).

const TOKEN = "annals.token";
const EXPIRES = "annals.tokenExpires";
const USER = "annals.user";

// APIError is a failed request: the HTTP status and the server's error body
// ({"code","reason","message"} on the server's routes, {"code","message"} on Connect's).
export class APIError extends Error {
  constructor(status, body, text) {
    super((body && body.message) || text || `HTTP ${status}`);
    this.status = status;
    this.code = body && body.code;
    this.reason = body && body.reason;
  }
}

// token returns the token of this tab's login, or null (none, or expired).
export function token() {
  const t = sessionStorage.getItem(TOKEN);
  const exp = Date.parse(sessionStorage.getItem(EXPIRES) || "");
  if (t && !Number.isNaN(exp) && exp <= Date.now()) {
    forget();
    return null;
  }
  return t;
}

export function forget() {
  sessionStorage.removeItem(TOKEN);
  sessionStorage.removeItem(EXPIRES);
  sessionStorage.removeItem(USER);
}

// user returns the name this tab logged in with, or null.
export function user() {
  return token() ? sessionStorage.getItem(USER) : null;
}

// unauthorized tells the app that the server wants credentials (it shows the login form).
function unauthorized() {
  forget();
  window.dispatchEvent(new CustomEvent("annals:unauthorized"));
}

function headers(extra) {
  const h = Object.assign({}, extra);
  const t = token();
  if (t) h.Authorization = "Bearer " + t;
  return h;
}

async function decode(res) {
  const text = await res.text();
  let body = null;
  if (text) {
    try {
      body = JSON.parse(text);
    } catch {
      body = null;
    }
  }
  if (!res.ok) {
    if (res.status === 401) unauthorized();
    throw new APIError(res.status, body, text.trim());
  }
  return body;
}

// get fetches a JSON route, e.g. get("/v1/streams", {prefix: "cart-"}). Parameters whose
// value is an array are repeated; empty ones are left out.
export async function get(path, params) {
  const res = await fetch(withQuery(path, params), { headers: headers(), cache: "no-store" });
  return decode(res);
}

// rpc calls a unary method of a service of the API (default the EventStoreService) with
// Connect's JSON.
export async function rpc(method, msg, service = "annals.v1.EventStoreService") {
  const res = await fetch("/" + service + "/" + method, {
    method: "POST",
    headers: headers({ "Content-Type": "application/json" }),
    body: JSON.stringify(msg || {}),
  });
  return decode(res);
}

// login posts the credentials to /v1/login and keeps the token it answers.
export async function login(username, password) {
  const res = await fetch("/v1/login", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ username, password }),
  });
  const text = await res.text();
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = null;
  }
  if (!res.ok || !body || !body.token) throw new APIError(res.status, body, text.trim());
  sessionStorage.setItem(TOKEN, body.token);
  sessionStorage.setItem(USER, body.username || username);
  if (body.expiresAt) sessionStorage.setItem(EXPIRES, body.expiresAt);
  else sessionStorage.removeItem(EXPIRES);
}

export function withQuery(path, params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) {
    for (const x of Array.isArray(v) ? v : [v]) {
      if (x !== undefined && x !== null && x !== "") q.append(k, String(x));
    }
  }
  const s = q.toString();
  return s ? path + "?" + s : path;
}

// follow opens an SSE route and calls onEvent with each recorded event. onState gets
// "connecting", "live", "reconnecting", or "closed" with an APIError when the server refused
// or ended the stream. It returns a function that closes it.
export function follow(path, params, { onEvent, onState }) {
  const t = token();
  const url = withQuery(path, Object.assign({}, params, t ? { access_token: t } : {}));
  const es = new EventSource(url);
  let closed = false;
  onState("connecting");
  es.onopen = () => onState("live");
  es.onmessage = (m) => {
    if (m.data) onEvent(JSON.parse(m.data));
  };
  es.addEventListener("annals.error", (m) => {
    es.close();
    closed = true;
    let body = null;
    try {
      body = JSON.parse(m.data);
    } catch {
      body = null;
    }
    onState("closed", new APIError(500, body, m.data));
  });
  es.onerror = async () => {
    if (closed) return;
    if (es.readyState !== EventSource.CLOSED) {
      onState("reconnecting");
      return;
    }
    // The browser gives up on an HTTP error without saying which: ask again with fetch (and
    // the header) to learn the status and the server's message.
    closed = true;
    onState("closed", await probe(withQuery(path, params)));
  };
  return () => {
    closed = true;
    es.close();
  };
}

async function probe(url) {
  const ctl = new AbortController();
  try {
    const res = await fetch(url, { headers: headers(), signal: ctl.signal });
    if (res.ok) {
      ctl.abort();
      return new APIError(0, null, "the event stream closed");
    }
    try {
      await decode(res);
    } catch (err) {
      return err;
    }
    return new APIError(res.status, null, "");
  } catch (err) {
    return new APIError(0, null, "cannot reach the server: " + err.message);
  }
}
