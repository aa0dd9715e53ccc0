// The overview's charts as plain SVG (a few hundred lines beat shipping a charting library:
// no build step, no vendored bundle to audit, and every mark carries data-* attributes with
// the exact number it shows, which is what the browser tests read).
import { el } from "./api.js";

const PALETTE = ["#2b6cb0", "#dd6b20", "#38a169", "#d53f8c", "#805ad5", "#319795", "#d69e2e",
  "#e53e3e", "#4a5568", "#3182ce", "#b7791f", "#00a3c4"];

export function typeColors(types) {
  return new Map(types.map((type, index) => [type, PALETTE[index % PALETTE.length]]));
}

function svg(width, height, label, ...children) {
  return el("svg:svg", { viewBox: `0 0 ${width} ${height}`, width: "100%", role: "img", "aria-label": label },
    ...children);
}

function niceMax(value) {
  if (value <= 5) return 5;
  const power = 10 ** Math.floor(Math.log10(value));
  return [1, 2, 2.5, 5, 10].map((step) => step * power).find((candidate) => candidate >= value);
}

// Events per day, one stacked bar per day, one segment per type.
export function stackedBars(body, colors) {
  const width = 760, height = 260, left = 40, bottom = 40, top = 10;
  const plotHeight = height - top - bottom;
  const days = body.days;
  const highest = niceMax(Math.max(1, ...days.map((day) => day.total)));
  const slot = (width - left - 10) / Math.max(days.length, 1);
  const barWidth = Math.max(2, Math.min(48, slot * 0.7));
  const y = (count) => top + plotHeight - (count / highest) * plotHeight;
  const axis = [0, highest / 2, highest].map((tick) => el("svg:g", { class: "tick" },
    el("svg:line", { x1: left, x2: width - 10, y1: y(tick), y2: y(tick) }),
    el("svg:text", { x: left - 6, y: y(tick) + 4, "text-anchor": "end" }, tick)));
  const labelEvery = Math.ceil(days.length / 10);
  const bars = days.map((day, index) => {
    const x = left + index * slot + (slot - barWidth) / 2;
    let base = 0;
    const segments = body.types.filter((type) => day.counts[type]).map((type) => {
      const count = day.counts[type];
      const segment = el("svg:rect", {
        x, width: barWidth, y: y(base + count), height: y(base) - y(base + count), fill: colors.get(type),
        class: "segment", dataset: { type, count: String(count) },
      }, el("svg:title", {}, `${day.date} ${type}: ${count}`));
      base += count;
      return segment;
    });
    return el("svg:g", { class: "day", dataset: { date: day.date, total: String(day.total) } },
      ...segments,
      index % labelEvery === 0
        ? el("svg:text", { x: x + barWidth / 2, y: height - bottom + 16, "text-anchor": "middle", class: "label" },
          day.date.slice(5))
        : null);
  });
  return svg(width, height, "Events per day by type", ...axis, ...bars);
}

export function legend(colors) {
  return el("ul", { class: "legend" }, [...colors].map(([type, color]) =>
    el("li", {}, el("svg:svg", { width: 12, height: 12, "aria-hidden": "true" },
      el("svg:rect", { width: 12, height: 12, fill: color })), type)));
}

// Weekday x hour, Monday on top; darker is busier.
export function heatmap(body) {
  const cell = 28, left = 44, top = 22;
  const width = left + 24 * cell + 4, height = top + 7 * cell + 4;
  const hours = Array.from({ length: 24 }, (_, hour) => hour % 3 === 0
    ? el("svg:text", { x: left + hour * cell + cell / 2, y: top - 8, "text-anchor": "middle", class: "label" }, hour)
    : null);
  const rows = body.cells.map((counts, weekday) => el("svg:g", { class: "weekday" },
    el("svg:text", { x: left - 8, y: top + weekday * cell + cell / 2 + 4, "text-anchor": "end", class: "label" },
      body.weekdays[weekday]),
    counts.map((count, hour) => el("svg:rect", {
      x: left + hour * cell + 1, y: top + weekday * cell + 1, width: cell - 2, height: cell - 2, rx: 3,
      fill: count ? "#2b6cb0" : "#edf2f7", "fill-opacity": count ? 0.15 + 0.85 * (count / body.max) : 1,
      class: "cell", dataset: { weekday: body.weekdays[weekday], hour: String(hour), count: String(count) },
    }, el("svg:title", {}, `${body.weekdays[weekday]} ${String(hour).padStart(2, "0")}:00 UTC: ${count}`)))));
  return svg(width, height, "Events by weekday and hour (UTC)", ...hours, ...rows);
}

const STAGES = [["published", "Published", "#2b6cb0"], ["redeemed", "Redeemed", "#38a169"],
  ["rolled_back", "Rolled back", "#e53e3e"]];

function percent(part, whole) {
  return whole ? `${Math.round((100 * part) / whole)}%` : "–";
}

// What each stage's number says, in customers: a share is of the previous stage's customers who
// went on (never above 100%); generic codes have no publication stage to convert from.
function stageText(campaign, key) {
  if (key === "published") return campaign.generic_codes ? "none: generic codes" : String(campaign.published);
  if (key === "redeemed") {
    if (campaign.generic_codes || !campaign.published) return String(campaign.redeemed);
    return `${campaign.redeemed} · ${campaign.redeemed_of_published} of ${campaign.published} published `
      + `(${percent(campaign.redeemed_of_published, campaign.published)})`;
  }
  if (!campaign.redeemed) return String(campaign.rolled_back);
  return `${campaign.rolled_back} (${percent(campaign.rolled_back_of_redeemed, campaign.redeemed)} of redeemers)`;
}

// One block per campaign: a bar per stage, sized against the campaign's largest stage.
export function funnel(body) {
  const width = 760, rowHeight = 20, labelWidth = 110, numberWidth = 250;
  const barSpace = width - labelWidth - numberWidth;
  const blockHeight = 24 + STAGES.length * (rowHeight + 4) + 10;
  const blocks = body.data.map((campaign, index) => {
    const whole = Math.max(campaign.published, campaign.redeemed, campaign.rolled_back, 1);
    const top = index * blockHeight;
    return el("svg:g", {
      class: `campaign${campaign.generic_codes ? " generic-codes" : ""}`,
      dataset: { campaignId: campaign.campaign_id, published: String(campaign.published),
        redeemed: String(campaign.redeemed), rolledBack: String(campaign.rolled_back),
        genericCodes: String(campaign.generic_codes) },
    },
    el("svg:text", { x: 0, y: top + 16, class: "campaign-name" },
      `${campaign.campaign_name || campaign.campaign_id}${campaign.campaign_type ? ` · ${campaign.campaign_type}` : ""}`),
    STAGES.map(([key, label, color], stage) => {
      const y = top + 24 + stage * (rowHeight + 4);
      const value = campaign[key];
      return el("svg:g", { class: "stage", dataset: { stage: key, count: String(value) } },
        el("svg:text", { x: 0, y: y + 14, class: "label" }, label),
        el("svg:rect", { x: labelWidth, y, height: rowHeight, rx: 3, fill: color,
          width: Math.max(1, (value / whole) * barSpace) }),
        el("svg:text", { x: labelWidth + barSpace + 8, y: y + 14, class: "number" }, stageText(campaign, key)));
    }));
  });
  return svg(width, Math.max(blockHeight * body.data.length, 30),
    "Customers published to, redeeming and rolled back per campaign", ...blocks);
}
