// The wall page: renders the frames of /wall/stream into tiles, the waiting list and the
// leaderboard; ticks waiting ages every second on its own; rotates between views.
import { Connection } from "./connection.js";

const config = JSON.parse(document.getElementById("wall-config").textContent);
const $ = (id) => document.getElementById(id);
const frames = new Map(); // key → newest frame
const receivedAt = new Map(); // key → performance.now() when that frame arrived
const failing = new Set(); // keys whose KPI store does not answer
const ranks = new Map(); // view name → Map(manager → rank)
const moves = new Map(); // view name → Map(manager → {delta, until})
let viewIndex = 0;
let connection = { state: "connecting", retryAt: 0 };
let lastSeen = null;

const money = new Intl.NumberFormat(undefined, {
  style: "currency", currency: config.currency, maximumFractionDigits: 0 });
const moneyShort = new Intl.NumberFormat(undefined, {
  style: "currency", currency: config.currency, notation: "compact", maximumSignificantDigits: 3 });
const count = new Intl.NumberFormat(undefined, { maximumFractionDigits: 1 });
const clock = new Intl.DateTimeFormat(undefined, {
  hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false, timeZone: config.timezone });

const fmtMoney = (v) => (v == null ? "—" : (Math.abs(v) >= 1e6 ? moneyShort : money).format(v));
const fmtShort = (v) => (v == null ? "—" : (Math.abs(v) >= 1e4 ? moneyShort : money).format(v));
const fmtCount = (v) => (v == null ? "—" : count.format(v));
const pad = (n) => String(n).padStart(2, "0");

function fmtAge(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
  return h ? `${h}:${pad(m)}:${pad(s % 60)}` : `${m}:${pad(s % 60)}`;
}

function fmtDuration(seconds) {
  if (seconds == null) return "—";
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${s % 60 ? ` ${s % 60}s` : ""}`;
  return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
}

// Shrinks a big number until it fits its tile (a long amount on a narrow tile).
function fit(node) {
  node.style.fontSize = "";
  let size = parseFloat(getComputedStyle(node).fontSize);
  while (node.scrollWidth > node.clientWidth && size > 12) {
    size *= 0.92;
    node.style.fontSize = `${size}px`;
  }
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function versus(actual, pace) {
  if (!pace) return null;
  const ratio = actual / pace;
  const tone = ratio >= 1 ? "good" : ratio >= 0.8 ? "warn" : "bad";
  const pct = Math.round((ratio - 1) * 100);
  return { tone, text: `${pct >= 0 ? "+" : "−"}${Math.abs(pct)}% vs pace`, ratio };
}

// Each tile: its label and how it fills value, sub lines and (revenue) the plan bar.
const TILES = {
  revenue: { label: "Revenue today", fill(f, t) {
    const k = f.kpis, p = f.plan;
    t.value(fmtMoney(k.revenue));
    const plan = p.revenue_today_plan, pace = p.revenue_today_pace;
    const v = plan ? versus(k.revenue, pace) : null;
    t.bar(plan ? k.revenue / plan : null, plan ? pace / plan : 0, v?.tone);
    t.sub(v ? [["", v.text, v.tone]] : [["no plan for today"]]);
    t.sub2(plan ? `today's plan ${fmtMoney(plan)}` : "");
    t.sub3(`month ${fmtShort(p.revenue_month)}`
      + (p.revenue_month_plan ? ` of ${fmtShort(p.revenue_month_plan)}` : ""));
  } },
  won: { label: "Won deals", fill(f, t) {
    const k = f.kpis, p = f.plan;
    t.value(fmtCount(k.won));
    const v = p.won_today_plan ? versus(k.won, p.won_today_pace) : null;
    t.sub(v ? [["", v.text, v.tone]] : [["lost ", fmtCount(k.lost)]]);
    t.sub2(p.won_today_plan ? `today's plan ${fmtCount(p.won_today_plan)}` : "");
    t.sub3(`month ${fmtCount(p.won_month)}${p.won_month_plan ? ` of ${fmtCount(p.won_month_plan)}` : ""}`);
  } },
  calls: { label: "Calls", fill(f, t) {
    t.value(fmtCount(f.kpis.calls));
    t.sub([["answered ", fmtCount(f.kpis.calls_answered)]]);
  } },
  conversion: { label: "Conversion", fill(f, t) {
    const c = f.kpis.conversion;
    t.value(c.value == null ? "—" : `${Math.round(c.value * 100)}%`);
    t.sub([["won ", fmtCount(c.numerator)], [" of ", fmtCount(c.denominator), null, " closed"]]);
  } },
  first_response: { label: "First response", fill(f, t) {
    const r = f.kpis.first_response;
    t.value(fmtDuration(r.median_seconds));
    t.sub([[r.count ? `median of ${fmtCount(r.count)} replies` : "no replies yet today"]]);
  } },
  waiting: { label: "Waiting now", fill(f, t) {
    if (!f.waiting) { t.value("—"); t.sub([["not available"]]); return; }
    const states = waitStates(tickedWaits(f, f.key));
    t.value(fmtCount(f.waiting.count));
    t.sub([["at risk ", fmtCount(states.warning), states.warning ? "warn" : ""],
      [" · late ", fmtCount(states.breached), states.breached ? "bad" : ""]]);
  } },
  deals_created: { label: "New deals", fill(f, t) { t.value(fmtCount(f.kpis.deals_created)); } },
  meetings: { label: "Meetings", fill(f, t) { t.value(fmtCount(f.kpis.meetings)); } },
  messages: { label: "Messages", fill(f, t) { t.value(fmtCount(f.kpis.messages)); } },
  average_check: { label: "Average deal", fill(f, t) { t.value(fmtMoney(f.kpis.average_check)); } },
};

function tileWriter(node) {
  const valueNode = node.querySelector(".value");
  return {
    value(text, long = false) {
      if (valueNode.textContent !== text && valueNode.dataset.filled) {
        node.classList.remove("bump");
        void node.offsetWidth; // restart the highlight animation
        node.classList.add("bump");
      }
      const changed = valueNode.textContent !== text;
      valueNode.textContent = text;
      valueNode.dataset.filled = "1";
      valueNode.classList.toggle("long", long);
      if (changed) fit(valueNode);
    },
    sub(parts) { fillSub(node.querySelector(".sub"), parts); },
    sub2(text) { node.querySelector(".sub2").textContent = text; },
    sub3(text) { node.querySelector(".sub3").textContent = text; },
    bar(fill, pace, tone) {
      const track = node.querySelector(".bar-track");
      track.hidden = fill == null;
      if (fill == null) return;
      const bar = track.querySelector(".bar-fill");
      bar.style.width = `${Math.min(100, Math.max(0, fill * 100))}%`;
      bar.className = `bar-fill ${tone === "good" ? "" : tone || ""}`;
      track.querySelector(".bar-pace").style.left = `${Math.min(100, pace * 100)}%`;
    },
  };
}

// parts: [plain, bold?, tone?, plain after?] groups, rendered without innerHTML.
function fillSub(node, parts) {
  node.replaceChildren();
  for (const part of parts) {
    if (!part) continue;
    const [plain, bold, tone, after] = part;
    node.append(plain);
    if (bold !== undefined) node.append(el("b", tone || "", bold));
    if (after) node.append(after);
  }
}

function currentView() { return config.views[viewIndex]; }

function buildView() {
  const view = currentView();
  $("title").textContent = view.title;
  const tiles = $("tiles");
  tiles.replaceChildren();
  for (const name of view.tiles) {
    const tile = el("div", "tile");
    tile.dataset.tile = name;
    tile.append(el("h3", "", TILES[name].label), el("div", "value", "—"));
    const track = el("div", "bar-track");
    track.append(el("div", "bar-fill"), el("div", "bar-pace"));
    track.hidden = true;
    const lines = el("div", "lines");
    lines.append(el("div", "sub", ""), el("div", "sub sub2", ""), el("div", "sub sub3", ""));
    tile.append(track, lines);
    tiles.append(tile);
  }
  const panels = new Set(view.panels);
  $("waiting").hidden = !panels.has("waiting");
  $("leaders").hidden = !panels.has("leaderboard");
  $("panels").hidden = panels.size === 0;
  $("wall").classList.toggle("no-panels", panels.size === 0);
  $("leaders-by").textContent = `today, by ${view.leaderboard_by}`;
  $("wait-rows").replaceChildren();
  $("leader-rows").replaceChildren();
  const dots = $("dots");
  dots.replaceChildren(...config.views.map((_, i) => el("i", i === viewIndex ? "on" : "")));
  dots.hidden = config.views.length < 2;
  render();
}

function render() {
  const view = currentView();
  const frame = frames.get(view.key);
  if (!frame) return;
  for (const node of $("tiles").children) TILES[node.dataset.tile].fill(frame, tileWriter(node));
  renderLeaders(view, frame);
  renderWaiting();
}

const STATE_RANK = { ok: 0, warning: 1, breached: 2 };

function tickedWaits(frame, key) {
  const since = (performance.now() - (receivedAt.get(key) || performance.now())) / 1000;
  return frame.waiting.entries.map((e) => {
    const age = e.age_seconds + (e.ticking ? since : 0);
    let state = e.state in STATE_RANK ? e.state : "ok";
    if (e.ticking) {
      const own = e.target_seconds != null && age >= e.target_seconds ? "breached"
        : e.warning_seconds != null && age >= e.warning_seconds ? "warning" : "ok";
      if (STATE_RANK[own] > STATE_RANK[state]) state = own;
    }
    return { ...e, age, state };
  }).sort((a, b) => b.age - a.age);
}

function waitStates(waits) {
  const states = { warning: 0, breached: 0 };
  for (const w of waits) if (w.state in states) states[w.state] += 1;
  return states;
}

function renderWaitingTile() {
  const frame = frames.get(currentView().key);
  const tile = $("tiles").querySelector('[data-tile="waiting"]');
  if (frame && tile) TILES.waiting.fill(frame, tileWriter(tile));
}

function renderWaiting() {
  const view = currentView();
  const frame = frames.get(view.key);
  if (!frame || !view.panels.includes("waiting")) return;
  const list = $("wait-rows");
  if (!frame.waiting) {
    $("wait-empty").hidden = false;
    $("wait-empty").textContent = "Waiting list not available";
    list.replaceChildren();
    return;
  }
  const waits = tickedWaits(frame, view.key);
  const states = waitStates(waits);
  const counts = $("wait-counts");
  counts.replaceChildren(el("span", "", `${fmtCount(frame.waiting.count)} waiting`));
  if (states.warning) counts.append(el("span", "warn", `${states.warning} at risk`));
  if (states.breached) counts.append(el("span", "bad", `${states.breached} breached`));
  $("wait-empty").hidden = waits.length > 0;
  $("wait-empty").textContent = "Nobody is waiting";
  const shown = waits.slice(0, view.rows - (waits.length > view.rows ? 1 : 0));
  const existing = new Map([...list.children].filter((li) => li.dataset.id).map((li) => [li.dataset.id, li]));
  const order = [];
  for (const w of shown) {
    let li = existing.get(w.id);
    if (!li) {
      li = el("li", "row");
      li.dataset.id = w.id;
      li.append(el("span", "channel"), el("span", "who"), el("span", "kind"), el("span", "age"));
    }
    li.children[0].textContent = w.channel || "—";
    li.children[1].textContent = w.name || "unassigned";
    li.children[2].textContent = w.kind === "next" ? "next" : "first";
    li.children[3].textContent = fmtAge(w.age);
    if (li.dataset.state !== w.state) li.dataset.state = w.state;
    order.push(li);
  }
  const hidden = frame.waiting.count - shown.length;
  if (hidden > 0) order.push(el("li", "more", `+ ${hidden} more waiting`));
  const same = order.length === list.children.length && order.every((li, i) => list.children[i] === li);
  if (!same) list.replaceChildren(...order); // only when rows come or go: alarms keep their beat
}

function renderLeaders(view, frame) {
  if (!view.panels.includes("leaderboard")) return;
  const by = view.leaderboard_by;
  const rows = [...frame.leaders].sort((a, b) =>
    b[by] - a[by] || b.revenue - a.revenue || b.won - a.won || b.calls - a.calls
    || (a.manager < b.manager ? -1 : 1)).slice(0, view.rows);
  const before = ranks.get(view.name);
  const now = new Map(rows.map((r, i) => [r.manager, i + 1]));
  const moved = moves.get(view.name) || new Map();
  const t = performance.now();
  if (before) {
    for (const [manager, rank] of now) {
      const old = before.get(manager);
      if (old && old !== rank) moved.set(manager, { delta: old - rank, until: t + 15000 });
    }
  }
  ranks.set(view.name, now);
  moves.set(view.name, moved);
  const list = $("leader-rows");
  const tops = new Map([...list.children].map((li) => [li.dataset.manager, li.getBoundingClientRect().top]));
  const existing = new Map([...list.children].map((li) => [li.dataset.manager, li]));
  const order = rows.map((r, i) => {
    let li = existing.get(r.manager);
    if (!li) {
      li = el("li", "row");
      li.dataset.manager = r.manager;
      li.append(el("span", "rank"), el("span", "name"), el("span", "revenue"), el("span", "won"), el("span", "calls"));
    }
    li.children[0].textContent = String(i + 1);
    li.children[1].replaceChildren(r.name);
    const move = moved.get(r.manager);
    if (move && move.until > t) {
      li.children[1].append(el("span", `move ${move.delta > 0 ? "up" : "down"}`,
        `${move.delta > 0 ? "▲" : "▼"}${Math.abs(move.delta)}`));
    }
    li.children[2].textContent = fmtMoney(r.revenue);
    li.children[3].textContent = fmtCount(r.won);
    li.children[4].textContent = fmtCount(r.calls);
    for (const [index, name] of ["revenue", "won", "calls"].entries()) {
      li.children[index + 2].classList.toggle("sorted", name === by);
    }
    return li;
  });
  list.replaceChildren(...order);
  // FLIP: each row starts where it was and slides to its new place.
  for (const li of order) {
    const old = tops.get(li.dataset.manager);
    const dy = old === undefined ? 0 : old - li.getBoundingClientRect().top;
    if (!dy) continue;
    li.animate([{ transform: `translateY(${dy}px)` }, { transform: "translateY(0)" }],
      { duration: 900, easing: "cubic-bezier(.2,.8,.2,1)" });
    li.classList.remove("moved");
    void li.offsetWidth;
    li.classList.add("moved");
  }
}

function showState() {
  const body = document.body;
  body.dataset.connection = connection.state;
  const text = $("conn-text");
  const banner = $("banner");
  if (connection.state === "lost") {
    const wait = Math.max(0, Math.ceil((connection.retryAt - Date.now()) / 1000));
    text.textContent = "connection lost";
    const since = lastSeen ? ` — showing data from ${clock.format(lastSeen)}` : "";
    banner.textContent = `Connection lost${since}. Reconnecting in ${wait} s…`;
    banner.className = "banner";
    banner.hidden = false;
  } else if (failing.has(currentView().key)) {
    text.textContent = connection.state === "live" ? "live" : "connecting…";
    banner.textContent = "The KPI store is not answering — showing the last values.";
    banner.className = "banner soft";
    banner.hidden = false;
  } else {
    text.textContent = connection.state === "live" ? "live" : "connecting…";
    banner.hidden = true;
  }
}

function onFrame(frame) {
  lastSeen = new Date();
  if (frame.error) {
    failing.add(frame.key);
  } else {
    failing.delete(frame.key);
    frames.set(frame.key, frame);
    receivedAt.set(frame.key, performance.now());
  }
  if (frame.key === currentView().key) render();
  showState();
}

function rotate() {
  const main = $("wall");
  main.classList.add("fading");
  setTimeout(() => {
    viewIndex = (viewIndex + 1) % config.views.length;
    buildView();
    main.classList.remove("fading");
  }, 600);
}

buildView();
const url = config.stream + window.location.search;
const live = new Connection(url, {
  pingSeconds: config.ping_seconds,
  onFrame,
  onState(state, retryAt) { connection = { state, retryAt }; showState(); },
});
live.open();
setInterval(() => {
  $("clock").textContent = clock.format(new Date());
  renderWaiting();
  renderWaitingTile();
  if (connection.state === "lost") showState();
}, 250);
window.addEventListener("resize", () => document.querySelectorAll(".tile .value").forEach(fit));
if (config.views.length > 1) setInterval(rotate, config.rotate_seconds * 1000);
