// The wall's live connection: an EventSource with its own back-off and a watchdog.
//
// EventSource retries by itself only on some failures (an HTTP error ends it for good),
// and a connection a proxy silently dropped looks open forever. So the page closes and
// reopens the stream itself: on any error, and when neither a frame nor a ping arrived
// for a few ping intervals. Back-off doubles from 1 s to 30 s, with jitter, and starts
// again from 1 s once a connection has delivered something.

const FIRST_DELAY_MS = 1000;
const MAX_DELAY_MS = 30000;

export class Connection {
  constructor(url, { pingSeconds, onFrame, onState }) {
    this.url = url;
    this.silenceMs = pingSeconds * 2500;
    this.onFrame = onFrame;
    this.onState = onState;
    this.delayMs = FIRST_DELAY_MS;
    this.source = null;
    this.watchdog = null;
    this.retryTimer = null;
    this.retryAt = 0;
    this.state = "idle";
  }

  open() {
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.state = "connecting";
    this.onState("connecting", 0);
    const source = new EventSource(this.url);
    this.source = source;
    source.addEventListener("open", () => this.alive());
    source.addEventListener("ping", () => this.alive());
    source.addEventListener("frame", (event) => {
      this.alive();
      this.onFrame(JSON.parse(event.data));
    });
    source.addEventListener("error", () => this.lost());
  }

  alive() {
    if (this.source === null) return;
    this.delayMs = FIRST_DELAY_MS;
    if (this.state !== "live") {
      this.state = "live";
      this.onState("live", 0);
    }
    clearTimeout(this.watchdog);
    this.watchdog = setTimeout(() => this.lost(), this.silenceMs);
  }

  lost() {
    if (this.source === null) return; // already waiting to reconnect
    this.source.close();
    this.source = null;
    this.state = "lost";
    clearTimeout(this.watchdog);
    const jitter = 0.8 + Math.random() * 0.4;
    const wait = Math.round(this.delayMs * jitter);
    this.delayMs = Math.min(this.delayMs * 2, MAX_DELAY_MS);
    this.retryAt = Date.now() + wait;
    this.onState("lost", this.retryAt);
    this.retryTimer = setTimeout(() => this.open(), wait);
  }
}
