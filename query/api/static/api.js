// Shared by both dashboard pages: the credentials, API reads, a DOM builder and the page header.
// Plain ES modules and SVG, no framework or charting library: nothing to build or vendor, the
// package ships these files as they are, and tests drive the same code a user runs.

const STORAGE_KEY = "voucher-activity.credentials";

// sessionStorage: the token survives reloads and page changes in this tab only, and is gone
// when the tab closes; it never reaches a cookie, so no other site can send it along.
export function credentials() {
  try {
    const saved = JSON.parse(sessionStorage.getItem(STORAGE_KEY));
    return saved && saved.token ? saved : null;
  } catch {
    return null;
  }
}

function saveCredentials(token, tenant) {
  sessionStorage.setItem(STORAGE_KEY, JSON.stringify({ token, tenant }));
}

function forgetCredentials() {
  sessionStorage.removeItem(STORAGE_KEY);
}

export class ApiError extends Error {
  constructor(status, body) {
    super(body && body.details ? body.details : `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

// The API's two schemes: a tenant name goes with the token as X-App-Id/X-App-Token
// (Voucherify clients); a token alone is sent as Bearer and names its own tenant.
function authHeaders(saved) {
  if (saved.tenant) return { "X-App-Id": saved.tenant, "X-App-Token": saved.token };
  return { Authorization: `Bearer ${saved.token}` };
}

export async function apiGet(path, params = []) {
  const saved = credentials();
  if (!saved) throw new ApiError(401, { details: "enter a token first" });
  const url = new URL(path, window.location.origin);
  for (const [name, value] of params) {
    if (value !== undefined && value !== null && value !== "") url.searchParams.append(name, value);
  }
  const response = await fetch(url, { headers: authHeaders(saved), cache: "no-store" });
  let body = null;
  try {
    body = await response.json();
  } catch {
    // A proxy's HTML error page: the status alone must do.
  }
  if (!response.ok) throw new ApiError(response.status, body);
  return body;
}

// Text always goes in as text nodes, never as markup: event data holds customer input.
export function el(tag, attributes = {}, ...children) {
  const node = tag.startsWith("svg:")
    ? document.createElementNS("http://www.w3.org/2000/svg", tag.slice(4))
    : document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "dataset") Object.assign(node.dataset, value);
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function utcText(iso) {
  return iso ? `${iso.slice(0, 10)} ${iso.slice(11, 19)} UTC` : "–";
}

// A bare date from an <input type=date> is already what the API takes (end_date: the whole day).
export function formValues(form, names) {
  const data = new FormData(form);
  return names.map((name) => [name, (data.get(name) || "").trim()]);
}

export function showMessage(target, text, kind = "error") {
  target.replaceChildren(text ? el("p", { class: `message ${kind}`, role: "status" }, text) : "");
}

// A link may carry the credentials in its fragment (`/dashboard#token=...&tenant=acme`, as the
// demo prints it): a fragment never reaches the server, so the token stays out of access logs
// and proxies. It is taken once and removed from the address bar and the tab's history.
function adoptFragmentCredentials() {
  const fragment = new URLSearchParams(window.location.hash.slice(1));
  const token = (fragment.get("token") || "").trim();
  if (!token) return;
  saveCredentials(token, (fragment.get("tenant") || "").trim());
  window.history.replaceState(null, "", window.location.pathname + window.location.search);
}

// Whom the credentials name (/v1/session): the tenant shown in the header, and whether the
// token is an admin token (only those may read /v1/status).
async function fetchSession() {
  try {
    return await apiGet("/v1/session");
  } catch (error) {
    if (error instanceof ApiError && (error.status === 401 || error.status === 403 || error.status === 400)) throw error;
    const saved = credentials();  // the server is unreachable: show what was entered
    return { tenant: saved.tenant || "?", admin: false };
  }
}

function signInForm(container, onReady, problem) {
  document.body.classList.remove("signed-in");
  const form = el("form", { class: "signin", id: "signin" },
    el("label", {}, "Tenant ", el("input", { name: "tenant", id: "tenant", autocomplete: "username",
      placeholder: "X-App-Id (optional)" })),
    el("label", {}, "Token ", el("input", { name: "token", id: "token", type: "password", required: true,
      autocomplete: "current-password", placeholder: "API token" })),
    el("button", { type: "submit" }, "Sign in"),
    problem ? el("span", { class: "signin-error", role: "alert" }, problem) : null,
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const [[, tenant], [, token]] = formValues(form, ["tenant", "token"]);
    if (!token) return;
    saveCredentials(token, tenant);
    mountSession(container, onReady);
  });
  container.replaceChildren(form);
}

// The sign-in box: asks for the token once per tab (or takes it from the link), checks it, then
// shows whom it reads and calls onReady(session).
export async function mountSession(container, onReady) {
  adoptFragmentCredentials();
  if (!credentials()) {
    signInForm(container, onReady);
    return;
  }
  let session;
  try {
    session = await fetchSession();
  } catch (error) {
    forgetCredentials();
    signInForm(container, onReady, `${error.message}.`);
    return;
  }
  container.replaceChildren(
    el("span", { class: "who", "data-testid": "signed-in", title: session.admin ? "admin token" : "tenant token" },
      session.tenant, session.admin ? el("span", { class: "badge admin" }, "admin") : null),
    el("button", { type: "button", class: "link", onclick: () => { forgetCredentials(); window.location.reload(); } },
      "Sign out"),
  );
  document.body.classList.add("signed-in");
  onReady(session);
}
