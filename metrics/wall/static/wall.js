// The wall page: renders the frames of /wall/stream into tiles, the waiting list and the
// leaderboard; ticks waiting ages every second on its own; rotates between views; shows a
// short banner when a deal is won.
//
// Every number arrives formatted by the server in the screen's locale (frame.text, rows'
// text): the TV's own locale never decides how an amount looks. Words come from the
// screen's catalogue (i18n.js). Nothing is cut off: text shrinks to fit its cell, an
// amount that still does not fit switches to its compact form, names wrap to two lines.
import { Connection } from "./connection.js";
import { Celebration } from "./celebrate.js";
import { evenNames, refit, setMoney, setName, setText, shrink } from "./fit.js";
import { words } from "./i18n.js";
import { makeTiles, tickedWaits, tileWriter, waitStates } from "./tiles.js";

const config = JSON.parse(document.getElementById("wall-config").textContent);
const w = words(config);
const $ = (id) => document.getElementById(id);
const frames = new Map(); // key → newest frame
const receivedAt = new Map(); // key → performance.now() when that frame arrived
const failing = new Set(); // keys whose KPI store does not answer
const ranks = new Map(); // view name → Map(manager → rank)
const moves = new Map(); // view name → Map(manager → {delta, until})
const celebration = new Celebration($("celebrate"), w, config.celebration_sound);
let viewIndex = 0;
let connection = { state: "connecting", retryAt: 0 };
let lastSeen = null;

// The ticking clock in the tenant's zone, written as the screen's locale writes a time
// (an explicit locale: never the TV's).
const clock = new Intl.DateTimeFormat(config.locale, {
  hour: "2-digit", minute: "2-digit", second: "2-digit", timeZone: config.timezone });
const pad = (n) => String(n).padStart(2, "0");


function fmtAge(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
  return h ? `${h}:${pad(m)}:${pad(s % 60)}` : `${m}:${pad(s % 60)}`;
}

function ago(seconds) {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return w.tn("ago.seconds", s);
  if (s < 3600) return w.tn("ago.minutes", Math.floor(s / 60));
  return w.tn("ago.hours", Math.floor(s / 3600));
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function currentView() { return config.views[viewIndex]; }

// A key's waits, aged by the time since its frame arrived.
function waitsOf(frame) {
  const since = (performance.now() - (receivedAt.get(frame.key) || performance.now())) / 1000;
  return tickedWaits(frame, since);
}

const TILES = makeTiles(w, waitsOf);

function buildView() {
  const view = currentView();
  setText($("title"), view.title);
  const tiles = $("tiles");
  tiles.replaceChildren();
  for (const name of view.tiles) {
    const tile = el("div", "tile");
    tile.dataset.tile = name;
    tile.append(el("h3", "", w.t(`tile.${name}`)), el("div", "value", "—"));
    const track = el("div", "bar-track");
    track.append(el("div", "bar-fill"), el("div", "bar-pace"));
    track.hidden = true;
    const lines = el("div", "lines");
    lines.append(el("div", "sub", ""), el("div", "sub sub2", ""), el("div", "sub sub3", ""));
    tile.append(track, lines);
    tiles.append(tile);
  }
  for (const h of tiles.querySelectorAll("h3")) shrink(h, 0.5);
  const panels = new Set(view.panels);
  $("waiting").hidden = !panels.has("waiting");
  $("leaders").hidden = !panels.has("leaderboard");
  $("panels").hidden = panels.size === 0;
  $("wall").classList.toggle("no-panels", panels.size === 0);
  setText($("leaders-by"), w.t(`leaders.by.${view.leaderboard_by}`));
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
  setText($("day"), frame.text.today);
  for (const node of $("tiles").children) TILES[node.dataset.tile](frame, tileWriter(node, w));
  renderLeaders(view, frame);
  renderWaiting();
}

// --- waiting --------------------------------------------------------------------------
function renderWaitingTile() {
  const frame = frames.get(currentView().key);
  const tile = $("tiles").querySelector('[data-tile="waiting"]');
  if (frame && tile) TILES.waiting(frame, tileWriter(tile, w));
}

function renderWaiting() {
  const view = currentView();
  const frame = frames.get(view.key);
  if (!frame || !view.panels.includes("waiting")) return;
  const list = $("wait-rows");
  const empty = $("wait-empty");
  if (!frame.waiting) {
    empty.hidden = false;
    empty.textContent = w.t("waiting.unavailable");
    list.replaceChildren();
    return;
  }
  const waits = waitsOf(frame);
  const states = waitStates(waits);
  const counts = $("wait-counts");
  const shownCounts = [el("span", "", w.tn("waiting.count", frame.waiting.count, { n: frame.text.waiting_count }))];
  if (states.at_risk) shownCounts.push(el("span", "warn", w.tn("waiting.at_risk", states.at_risk)));
  if (states.breached) shownCounts.push(el("span", "bad", w.tn("waiting.breached", states.breached)));
  if (counts.textContent !== shownCounts.map((s) => s.textContent).join("")) {
    counts.replaceChildren(...shownCounts);
  }
  empty.hidden = waits.length > 0;
  empty.textContent = w.t("waiting.nobody");
  const shown = waits.slice(0, view.rows - (waits.length > view.rows ? 1 : 0));
  const existing = new Map([...list.children].filter((li) => li.dataset.id).map((li) => [li.dataset.id, li]));
  const order = [];
  for (const wait of shown) {
    let li = existing.get(wait.id);
    if (!li) {
      li = el("li", "row");
      li.dataset.id = wait.id;
      li.append(el("span", "channel"), el("span", "who"), el("span", "kind"), el("span", "age"));
    }
    const channel = `channel.${wait.channel}`;
    setText(li.children[0], w.has(channel) ? w.t(channel) : wait.channel || "—");
    setName(li.children[1], wait.name || w.t("waiting.unassigned"));
    setText(li.children[2], w.t(wait.kind === "next" ? "waiting.kind.next" : "waiting.kind.first"));
    li.children[3].textContent = fmtAge(wait.age);
    if (li.dataset.state !== wait.state) li.dataset.state = wait.state;
    order.push(li);
  }
  const hidden = frame.waiting.count - shown.length;
  if (hidden > 0) order.push(el("li", "more", w.tn("waiting.more", hidden)));
  const same = order.length === list.children.length && order.every((li, i) => list.children[i] === li);
  if (!same) {
    list.replaceChildren(...order); // only when rows come or go: alarms keep their beat
    refit(list);
  }
}

// --- leaderboard ----------------------------------------------------------------------
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
      const plan = el("span", "plan");
      const track = el("span", "plan-track");
      track.append(el("span", "plan-fill"));
      plan.append(track, el("span", "plan-pct"));
      li.append(el("span", "rank"), el("span", "name"), el("span", "move"),
        el("span", "revenue"), el("span", "won"), el("span", "calls"), plan);
    }
    const [rank, name, moveNode, revenue, won, calls, plan] = li.children;
    rank.textContent = String(i + 1);
    setName(name, r.name ?? w.t("waiting.unassigned"));
    const move = moved.get(r.manager);
    const shownMove = move && move.until > t
      ? `${move.delta > 0 ? "▲" : "▼"}${Math.abs(move.delta)}` : "";
    moveNode.textContent = shownMove;
    moveNode.className = `move ${move && move.delta > 0 ? "up" : "down"}`;
    setMoney(revenue, r.text.revenue);
    setText(won, r.text.won);
    setText(calls, r.text.calls);
    plan.hidden = r.progress == null;
    plan.dataset.progress = r.progress == null ? "" : String(r.progress);
    plan.querySelector(".plan-fill").style.width = `${Math.min(100, Math.max(0, (r.progress || 0) * 100))}%`;
    plan.classList.toggle("done", (r.progress || 0) >= 1);
    setText(plan.querySelector(".plan-pct"), r.text.progress);
    for (const [index, column] of ["revenue", "won", "calls"].entries()) {
      li.children[index + 3].classList.toggle("sorted", column === by);
    }
    return li;
  });
  const attached = order.every((li, i) => list.children[i] === li) && order.length === list.children.length;
  list.replaceChildren(...order);
  if (!attached) refit(list);
  evenNames(list);
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

// --- connection -----------------------------------------------------------------------
function showState() {
  document.body.dataset.connection = connection.state;
  const text = $("conn-text");
  const banner = $("banner");
  if (connection.state === "lost") {
    const wait = Math.max(0, Math.ceil((connection.retryAt - Date.now()) / 1000));
    text.textContent = w.t("conn.lost");
    const lost = lastSeen
      ? w.t("banner.lost_since", { ago: ago((Date.now() - lastSeen) / 1000) })
      : w.t("banner.lost");
    banner.textContent = `${lost} ${w.tn("banner.reconnecting", wait)}`;
    banner.className = "banner";
    banner.hidden = false;
  } else if (failing.has(currentView().key)) {
    text.textContent = w.t(connection.state === "live" ? "conn.live" : "conn.connecting");
    banner.textContent = w.t("banner.store_down");
    banner.className = "banner soft";
    banner.hidden = false;
  } else {
    text.textContent = w.t(connection.state === "live" ? "conn.live" : "conn.connecting");
    banner.hidden = true;
  }
}

function onFrame(frame) {
  lastSeen = Date.now();
  if (frame.error) {
    failing.add(frame.key);
  } else {
    failing.delete(frame.key);
    frames.set(frame.key, frame);
    receivedAt.set(frame.key, performance.now());
    celebration.note(frame, frame.key === currentView().key);
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

for (const node of document.querySelectorAll("[data-t]")) node.textContent = w.t(node.dataset.t);
for (const node of document.querySelectorAll(".row.head > *")) shrink(node, 0.5);
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
window.addEventListener("resize", refit);
if (config.views.length > 1) setInterval(rotate, config.rotate_seconds * 1000);
