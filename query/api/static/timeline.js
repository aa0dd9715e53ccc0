// Customer timeline: newest first over the activity API's cursor (starting_after_id /
// more_starting_after), more pages as the end of the list scrolls into view, and new events
// polled after the newest one shown. Polling rather than server-sent events: EventSource
// cannot send the API's auth headers, and a cursor poll is one cheap indexed read.
import { ApiError, apiGet, el, formValues, mountSession, showMessage, utcText } from "./api.js";

const PAGE_SIZE = 20;
const FILTERS = ["type", "category", "campaign_id", "start_date", "end_date"];
// SPEC §4's catalog, for the type filter (customer_event rows may add others: type them in the URL).
const TYPES = ["customer.created", "customer.updated", "customer.deleted", "customer.redemption.succeeded",
  "customer.redemption.failed", "customer.redemption.rollback.succeeded", "customer.redemption.rollback.failed",
  "customer.publication.succeeded", "customer.publication.failed", "customer.order.created",
  "customer.order.updated", "customer.order.paid", "customer.order.fulfilled", "customer.order.canceled",
  "customer.order.processing", "customer.segment.entered", "customer.segment.left",
  "customer.voucher.gift.balance_added", "customer.voucher.loyalty_card.points_added",
  "customer.voucher.loyalty_card.points_expired", "customer.holder.assignment.created",
  "customer.holder.assignment.deleted", "customer.voucher.deleted"];
const ICONS = { redemption: "R", publication: "P", order: "O", segment: "S", voucher: "V", holder: "H" };

const page = new URLSearchParams(window.location.search);
// Seconds between checks for new events; the URL may ask for another pace (1..60).
const refreshSeconds = Math.min(60, Math.max(1, Number(page.get("refresh")) || 5));
const state = { key: "", filters: [], cursor: null, hasMore: false, newestId: null, loading: false, generation: 0 };
const campaigns = new Map();

const $ = (id) => document.getElementById(id);

function family(type) {
  const parts = type.split(".");
  return parts.find((part) => part in ICONS) || "customer";
}

// The fields of `data` a support agent looks for first, per object the event carries.
function keyFields(data) {
  const fields = [];
  const add = (label, value) => { if (value !== undefined && value !== null && value !== "") fields.push([label, value]); };
  if (data.voucher) add("voucher", data.voucher.code);
  if (data.redemption) { add("amount", data.redemption.amount); add("status", data.redemption.status); }
  if (data.redemption_rollback) { add("amount", data.redemption_rollback.amount); add("reason", data.redemption_rollback.reason); }
  if (data.publication) { add("channel", data.publication.channel); add("failure", data.publication.failure_code); }
  if (data.order) { add("order", data.order.source_id || data.order.id); add("status", data.order.status); add("amount", data.order.amount); }
  if (data.segment) add("segment", data.segment.name);
  if (data.transaction) { add("amount", data.transaction.amount); add("balance", data.transaction.balance_after); }
  if (Array.isArray(data.changed_fields)) add("changed", data.changed_fields.join(", "));
  if (data.event_source) add("source", data.event_source.source);
  return fields;
}

function eventItem(event, fresh) {
  const data = event.data || {};
  const campaign = data.campaign;
  if (campaign && campaign.id) campaigns.set(campaign.id, campaign);
  return el("li", {
    class: `event category-${event.category} family-${family(event.type)}${fresh ? " fresh" : ""}`,
    dataset: { id: event.id, type: event.type, category: event.category, createdAt: event.created_at },
  },
  el("span", { class: "icon", "aria-hidden": "true" }, ICONS[family(event.type)] || "C"),
  el("div", { class: "body" },
    el("div", { class: "headline" },
      el("strong", { class: "type" }, event.type),
      el("span", { class: "badge" }, event.category),
      el("time", { datetime: event.created_at }, utcText(event.created_at))),
    campaign ? el("div", { class: "campaign" }, `${campaign.name || campaign.id}`,
      campaign.campaign_type ? ` · ${campaign.campaign_type}` : "") : null,
    el("dl", { class: "fields" }, keyFields(data).map(([label, value]) => [el("dt", {}, label), el("dd", {}, value)]))));
}

function refreshCampaignFilter() {
  const select = $("filter-campaign");
  const chosen = select.value;
  const known = new Set([...select.options].map((option) => option.value));
  for (const [id, campaign] of campaigns) {
    if (!known.has(id)) select.append(el("option", { value: id }, campaign.name || id));
  }
  select.value = chosen;
}

function showCustomer(event) {
  const card = $("customer-card");
  const customer = event && event.data && event.data.customer;
  if (!customer) { card.hidden = true; return; }
  card.hidden = false;
  card.replaceChildren(
    el("h2", {}, customer.name || customer.source_id || customer.id),
    el("dl", { class: "fields" },
      el("dt", {}, "source_id"), el("dd", { id: "customer-source-id" }, customer.source_id || "–"),
      el("dt", {}, "id"), el("dd", { id: "customer-id" }, customer.id),
      customer.email ? [el("dt", {}, "email"), el("dd", {}, customer.email)] : null),
    el("p", { class: "live" }, `Live: new events appear within ${refreshSeconds} s.`));
}

function activityPath() {
  return `/v1/customers/${encodeURIComponent(state.key)}/activity`;
}

function renderMore() {
  const more = $("more");
  more.dataset.state = state.loading ? "loading" : state.hasMore ? "more" : "end";
  $("timeline").dataset.count = String($("timeline").children.length);
  if (state.loading) more.replaceChildren("Loading…");
  else if (state.hasMore) more.replaceChildren(el("button", { type: "button", onclick: loadMore }, "Load more"));
  else more.replaceChildren(state.key && $("timeline").children.length ? "Start of the history." : "");
}

function failed(error) {
  const hint = error instanceof ApiError && (error.status === 401 || error.status === 403)
    ? " Sign out and enter a token for this tenant." : "";
  showMessage($("message"), `${error.message}.${hint}`);
}

async function loadMore() {
  if (state.loading || !state.key || (!state.hasMore && state.cursor !== null)) return;
  state.loading = true;
  renderMore();
  const generation = state.generation;
  try {
    const body = await apiGet(activityPath(), [["limit", PAGE_SIZE], ["order", "-created_at"],
      ["starting_after_id", state.cursor], ...state.filters]);
    if (generation !== state.generation) return;
    if (state.cursor === null) {
      state.newestId = body.data.length ? body.data[0].id : null;
      showCustomer(body.data[0]);
      if (!body.data.length) showMessage($("message"), "No events match.", "info");
    }
    $("timeline").append(...body.data.map((event) => eventItem(event, false)));
    state.cursor = body.more_starting_after || "";
    state.hasMore = body.has_more;
    refreshCampaignFilter();
  } catch (error) {
    if (generation === state.generation) failed(error);
  } finally {
    if (generation === state.generation) { state.loading = false; renderMore(); }
  }
  // The observer only reports changes: a page too short to push the end out of view would
  // otherwise never ask for the next one.
  if (generation === state.generation && state.hasMore && endInView()) window.setTimeout(loadMore, 0);
}

function endInView() {
  return $("more").getBoundingClientRect().top < window.innerHeight + 200;
}

// Events after the newest one shown, oldest first, so each page continues the last.
async function pollNew() {
  if (!state.key || state.loading || document.hidden) return;
  if (state.newestId === null) { if (!$("timeline").children.length) await restart(); return; }
  const generation = state.generation;
  try {
    let more = true;
    while (more && generation === state.generation) {
      const body = await apiGet(activityPath(), [["limit", 100], ["order", "created_at"],
        ["starting_after_id", state.newestId], ...state.filters]);
      if (generation !== state.generation || !body.data.length) return;
      $("timeline").prepend(...body.data.map((event) => eventItem(event, true)).reverse());
      state.newestId = body.data[body.data.length - 1].id;
      more = body.has_more;
      renderMore();
      refreshCampaignFilter();
    }
  } catch (error) {
    if (generation === state.generation) failed(error);
  }
}

async function restart() {
  state.generation += 1;
  Object.assign(state, { cursor: null, hasMore: false, newestId: null, loading: false });
  $("timeline").replaceChildren();
  showMessage($("message"), "");
  const query = new URLSearchParams([["customer", state.key], ...state.filters.filter(([, v]) => v)]);
  if (page.has("refresh")) query.set("refresh", page.get("refresh"));
  window.history.replaceState(null, "", `?${query}`);
  await loadMore();
}

function start() {
  const typeSelect = $("filter-type");
  typeSelect.append(...TYPES.map((type) => el("option", { value: type }, type)));
  for (const name of FILTERS) {
    const input = $("filters").elements[name];
    const value = page.get(name);
    if (value && name === "campaign_id") input.append(el("option", { value }, value));
    if (value) input.value = value;
  }
  state.filters = formValues($("filters"), FILTERS);
  $("lookup").addEventListener("submit", (event) => {
    event.preventDefault();
    state.key = formValues($("lookup"), ["customer"])[0][1];
    restart();
  });
  $("filters").addEventListener("submit", (event) => {
    event.preventDefault();
    state.filters = formValues($("filters"), FILTERS);
    if (state.key) restart();
  });
  $("filters").addEventListener("reset", () => {
    window.setTimeout(() => $("filters").requestSubmit(), 0);
  });
  new IntersectionObserver((entries) => {
    if (entries.some((entry) => entry.isIntersecting) && state.hasMore) loadMore();
  }, { rootMargin: "200px" }).observe($("more"));
  window.setInterval(pollNew, refreshSeconds * 1000);
  if (page.get("customer")) {
    $("customer").value = page.get("customer");
    state.key = page.get("customer");
    restart();
  }
}

mountSession($("session"), start);
