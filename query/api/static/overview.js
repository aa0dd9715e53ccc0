// Tenant overview: one request per chart to /v1/analytics/..., each drawn as it arrives, so a
// slow chart never holds the others back.
import { ApiError, apiGet, el, formValues, mountSession, showMessage, utcText } from "./api.js";
import { funnel, heatmap, legend, stackedBars, typeColors } from "./charts.js";

const FILTERS = ["start_date", "end_date", "category"];
const $ = (id) => document.getElementById(id);

// Milliseconds matter at steady state; after a backlog or a replay, days are what to read.
function seconds(value) {
  if (value === null || value === undefined) return "–";
  if (value < 60) return `${value.toFixed(3)} s`;
  if (value < 3600) return `${Math.floor(value / 60)} min ${Math.round(value % 60)} s`;
  if (value < 86400) return `${(value / 3600).toFixed(1)} h`;
  return `${(value / 86400).toFixed(1)} days`;
}

function facts(rows) {
  return el("dl", { class: "fields" }, rows.map(([label, value, id]) =>
    [el("dt", {}, label), el("dd", { id }, value)]));
}

const CHARTS = {
  "events-per-day": (body) => {
    $("total-events").textContent = String(body.days.reduce((sum, day) => sum + day.total, 0));
    if (!body.days.length) return "No events in this range.";
    const colors = typeColors(body.types);
    return [stackedBars(body, colors), legend(colors)];
  },
  heatmap: (body) => heatmap(body),
  funnel: (body) => (body.data.length ? funnel(body) : "No publications, redemptions or rollbacks."),
  "top-customers": (body) => el("table", { class: "top" },
    el("thead", {}, el("tr", {}, el("th", {}, "customer"), el("th", {}, "events"), el("th", {}, "last event"))),
    el("tbody", {}, body.data.map((row) => el("tr", { dataset: { customerId: row.customer_id, events: String(row.events) } },
      el("td", {}, el("a", { href: `/dashboard?customer=${encodeURIComponent(row.customer_id)}` },
        row.source_id || row.customer_id), row.deleted ? " (deleted)" : ""),
      el("td", { class: "number" }, row.events),
      el("td", {}, utcText(row.last_event_at)))))),
  "ingest-lag": (body) => (body.events
    ? facts([["p50", seconds(body.lag_seconds.p50), "lag-p50"], ["p99", seconds(body.lag_seconds.p99), "lag-p99"],
      ["max", seconds(body.lag_seconds.max), "lag-max"], ["streamed events", body.events, "lag-events"],
      ["last stored", utcText(body.last_ingested_at), "lag-last"]])
    : "No streamed events in this range."),
};

async function draw(name, filters) {
  const target = $(name);
  target.setAttribute("aria-busy", "true");
  try {
    const params = name === "funnel" || name === "top-customers" ? [...filters, ["limit", 10]] : filters;
    const body = await apiGet(`/v1/analytics/${name}`, params);
    target.replaceChildren(...[CHARTS[name](body)].flat());
    target.dataset.ready = "true";
  } catch (error) {
    target.replaceChildren();
    const hint = error instanceof ApiError && (error.status === 401 || error.status === 403)
      ? " Sign out and enter a token for this tenant." : "";
    showMessage($("message"), `${error.message}.${hint}`);
  } finally {
    target.removeAttribute("aria-busy");
  }
}

// The replication side of the lag is in /v1/status, which only an admin token may read: a
// tenant token is not sent there at all.
async function drawReader(session) {
  if (!session.admin) {
    $("reader-lag").replaceChildren(el("p", { class: "hint", id: "reader-needs-admin" },
      "The reader's replication lag and retained WAL are shared by every tenant: an admin token reads them, "
      + "a tenant token reads its own events only."));
    return;
  }
  try {
    const status = await apiGet("/v1/status");
    const source = status.source || {};
    $("reader-lag").replaceChildren(source.error ? `source: ${source.error}` : facts([
      ["lag", seconds(source.lag_seconds), "reader-lag-seconds"],
      ["lag bytes", source.lag_bytes ?? "–", "reader-lag-bytes"],
      ["WAL retained", source.retained_wal_bytes ?? "–", "reader-retained"],
    ]));
  } catch (error) {
    $("reader-lag").replaceChildren(`Unavailable: ${error.message}`);
  }
}

function refresh(session) {
  showMessage($("message"), "");
  const filters = formValues($("filters"), FILTERS);
  const query = new URLSearchParams(filters.filter(([, value]) => value));
  window.history.replaceState(null, "", query.size ? `?${query}` : window.location.pathname);
  return Promise.all([...Object.keys(CHARTS).map((name) => draw(name, filters)), drawReader(session)]);
}

function start(session) {
  const page = new URLSearchParams(window.location.search);
  for (const name of FILTERS) if (page.get(name)) $("filters").elements[name].value = page.get(name);
  $("filters").addEventListener("submit", (event) => { event.preventDefault(); refresh(session); });
  refresh(session).then(() => { document.body.dataset.loaded = "true"; });
}

mountSession($("session"), start);
