// The celebration of a won deal: a short banner over the tiles (the manager's name and the
// amount), one deal after another, with an optional chime per screen.
import { setMoney, setText } from "./fit.js";

const CHEER_MS = 5000;

export class Celebration {
  constructor(node, words, sound) {
    this.node = node;
    this.words = words;
    this.sound = sound;
    this.seen = new Set(); // ids of won deals already seen
    this.primed = new Set(); // keys whose first frame has been seen (its wins are old news)
    this.queue = [];
    this.busy = false;
  }

  // The frame's wins; only those new since the screen first saw the key are celebrated,
  // and only on the key on screen.
  note(frame, onScreen) {
    const fresh = (frame.wins || []).filter((win) => !this.seen.has(win.id));
    for (const win of fresh) this.seen.add(win.id);
    const firstLook = !this.primed.has(frame.key);
    this.primed.add(frame.key);
    if (firstLook || !onScreen) return;
    this.queue.push(...fresh.reverse()); // oldest first
    if (!this.busy) this.next();
  }

  next() {
    const win = this.queue.shift();
    const banner = this.node;
    if (!win) { this.busy = false; banner.hidden = true; return; }
    this.busy = true;
    banner.hidden = false;
    const w = this.words;
    setText(banner.querySelector(".who"),
      win.name ? w.t("celebrate.won", { name: win.name }) : w.t("celebrate.unassigned"));
    const amount = banner.querySelector(".amount");
    amount.hidden = win.amount == null;
    if (win.amount != null) setMoney(amount, win.text);
    banner.classList.remove("show");
    void banner.offsetWidth; // restart the entrance animation
    banner.classList.add("show");
    if (this.sound) chime();
    setTimeout(() => this.next(), CHEER_MS);
  }
}

// A short rising chime, synthesised (no sound file to serve or to fetch from outside).
function chime() {
  try {
    const audio = new AudioContext();
    [523.25, 659.25, 783.99].forEach((hz, i) => {
      const tone = audio.createOscillator();
      const gain = audio.createGain();
      const at = audio.currentTime + i * 0.12;
      tone.frequency.value = hz;
      gain.gain.setValueAtTime(0.0001, at);
      gain.gain.exponentialRampToValueAtTime(0.3, at + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, at + 0.5);
      tone.connect(gain).connect(audio.destination);
      tone.start(at);
      tone.stop(at + 0.55);
    });
    setTimeout(() => audio.close(), 1500);
  } catch {
    // A browser that refuses audio without a gesture still shows the banner.
  }
}
