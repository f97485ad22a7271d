// The organisation's live stream (Server-Sent Events, the API's /stream), opened once
// and shared by the pages: each page subscribes while it is shown.
import { STREAM, whoami } from "./api.js";

const KINDS = ["online", "offline", "measurepoints", "events", "commands", "refused"];
const listeners = new Set();
let source = null;
let retry = 0;

function setStatus(state) {
  const badge = document.getElementById("live");
  if (!badge) return;
  badge.dataset.state = state;
  badge.textContent = state === "open" ? "Live" : state === "closed" ? "Not live" : "Connecting…";
}

export function start() {
  stop();
  setStatus("connecting");
  source = new EventSource(`${STREAM}?kinds=${KINDS.join(",")}`);
  source.addEventListener("open", () => {
    setStatus("open");
    // What changed while the stream was not open is not in it: pages reload on this.
    for (const listener of [...listeners]) listener({ kind: "open" });
  });
  for (const kind of KINDS) {
    source.addEventListener(kind, (event) => {
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        return;
      }
      for (const listener of [...listeners]) listener(message);
    });
  }
  // EventSource would retry on its own; instead ask whether the session still holds,
  // so an ended one shows the sign-in page rather than retrying forever.
  source.addEventListener("error", () => {
    stop(false);
    setStatus("connecting");
    clearTimeout(retry);
    retry = setTimeout(async () => {
      if (await whoami().catch(() => null)) start();
      else window.dispatchEvent(new CustomEvent("gatehouse:signed-out"));
    }, 2000);
  });
}

export function stop(final = true) {
  if (source) source.close();
  source = null;
  if (final) {
    clearTimeout(retry);
    setStatus("closed");
  }
}

// fn(message) for each message; returns the function that unsubscribes.
export function subscribe(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}
