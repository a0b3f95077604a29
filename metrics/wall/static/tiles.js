// The wall's tiles and the waiting list's ticking ages: what each tile shows of a frame.
//
// Numbers come formatted by the server (frame.text, plan.text); words from the screen's
// catalogue (w). Counts the page ticks itself (at most a few dozen waits) are below 1000,
// where every locale of the wall writes an integer as its plain digits.
import { setMoney, setTemplate, setText } from "./fit.js";

const plain = (n) => String(n);

const STATE_RANK = { ok: 0, at_risk: 1, breached: 2 };

// The frame's waits aged by ``since`` seconds on the page: a ticking wait turns amber or
// red on its own, between frames.
export function tickedWaits(frame, since) {
  return frame.waiting.entries.map((e) => {
    const age = e.age_seconds + (e.ticking ? since : 0);
    let state = e.state in STATE_RANK ? e.state : "ok";
    if (e.ticking) {
      const own = e.target_seconds != null && age >= e.target_seconds ? "breached"
        : e.at_risk_seconds != null && age >= e.at_risk_seconds ? "at_risk" : "ok";
      if (STATE_RANK[own] > STATE_RANK[state]) state = own;
    }
    return { ...e, age, state };
  }).sort((a, b) => b.age - a.age);
}

export function waitStates(waits) {
  const states = { at_risk: 0, breached: 0 };
  for (const wait of waits) if (wait.state in states) states[wait.state] += 1;
  return states;
}

const toneOf = (actual, pace) => {
  if (!pace) return null;
  const ratio = actual / pace;
  return ratio >= 1 ? "good" : ratio >= 0.8 ? "warn" : "bad";
};

// --- tiles ----------------------------------------------------------------------------
export function makeTiles(w, waitsOf) {
  return {
    revenue(f, t) {
      const k = f.kpis, p = f.plan, x = p.text;
      t.money(f.text.revenue);
      const plan = p.revenue_today_plan, pace = p.revenue_today_pace;
      const tone = plan ? toneOf(k.revenue, pace) : null;
      t.bar(plan ? k.revenue / plan : null, plan ? pace / plan : 0, tone);
      if (x.revenue_vs_pace) t.sub("sub.vs_pace", { pct: { text: x.revenue_vs_pace, tone } });
      else t.sub("sub.no_plan_today");
      t.sub2(plan ? ["sub.todays_plan", { amount: x.revenue_today_plan.short }] : null);
      t.sub3(x.revenue_month_plan
        ? ["sub.month_of", { amount: x.revenue_month.short, plan: x.revenue_month_plan.short }]
        : ["sub.month", { amount: x.revenue_month.short }]);
    },
    won(f, t) {
      const k = f.kpis, p = f.plan, x = p.text;
      t.value(f.text.won);
      const tone = p.won_today_plan ? toneOf(k.won, p.won_today_pace) : null;
      if (x.won_vs_pace) t.sub("sub.vs_pace", { pct: { text: x.won_vs_pace, tone } });
      else t.sub("sub.lost", { n: f.text.lost });
      t.sub2(p.won_today_plan ? ["sub.todays_plan", { amount: x.won_today_plan }] : null);
      t.sub3(x.won_month_plan
        ? ["sub.month_of", { amount: x.won_month, plan: x.won_month_plan }]
        : ["sub.month", { amount: x.won_month }]);
    },
    calls(f, t) {
      t.value(f.text.calls);
      t.sub("sub.answered", { n: f.text.calls_answered });
    },
    conversion(f, t) {
      t.value(f.text.conversion);
      t.sub("sub.won_of_closed", { won: f.text.conversion_won, closed: f.text.conversion_closed });
    },
    first_response(f, t) {
      const r = f.kpis.first_response;
      t.value(f.text.first_response);
      if (r.count) t.subN("sub.replies", r.count, { n: f.text.replies });
      else t.sub("sub.no_replies");
    },
    waiting(f, t) {
      if (!f.waiting) { t.value("—"); t.sub("sub.not_available"); return; }
      const states = waitStates(waitsOf(f));
      t.value(f.text.waiting_count);
      t.sub("sub.at_risk_late", {
        at_risk: { text: plain(states.at_risk), tone: states.at_risk ? "warn" : "" },
        breached: { text: plain(states.breached), tone: states.breached ? "bad" : "" },
      });
    },
    deals_created(f, t) { t.value(f.text.deals_created); },
    meetings(f, t) { t.value(f.text.meetings); },
    messages(f, t) { t.value(f.text.messages); },
    average_check(f, t) { t.money(f.text.average_check); },
  };
}

export function tileWriter(node, w) {
  const valueNode = node.querySelector(".value");
  const bump = (key) => {
    if (valueNode.dataset.shown !== undefined && valueNode.dataset.shown !== key) {
      node.classList.remove("bump");
      void node.offsetWidth; // restart the highlight animation
      node.classList.add("bump");
    }
    valueNode.dataset.shown = key;
  };
  const line = (selector, spec) => {
    const target = node.querySelector(selector);
    if (!spec) { target.replaceChildren(); return; }
    setTemplate(target, w.template(spec[0]), spec[1] || {});
  };
  return {
    value(text) { bump(text); setText(valueNode, text); },
    money(money) { bump(money.full); setMoney(valueNode, money); },
    sub(key, params) { line(".sub", [key, params]); },
    subN(key, n, params) {
      const target = node.querySelector(".sub");
      setTemplate(target, w.template(key, n), params);
    },
    sub2(spec) { line(".sub2", spec); },
    sub3(spec) { line(".sub3", spec); },
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

