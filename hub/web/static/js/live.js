// A live stream (Server-Sent Events) that survives lifts, basements and hub restarts.
//
// Every event of the hub's streams carries an id (docs/web.md). While the browser's own
// EventSource reconnects, it sends Last-Event-ID and the hub replays what was missed. If
// the browser gives up (an error status, e.g. a proxy's 502 during a restart), we open a
// new EventSource with ?since=<last id>, which the hub treats the same way; a 401 sends
// the page to the login screen. onStatus gets "connecting", "live" or "offline".
import { loadSession, toLogin } from "./api.js";

export function openLive(url, { events, onEvent, onStatus, onReady }) {
  let source = null;
  let lastId = "";
  let timer = 0;
  let backoff = 1000;
  let stopped = false;

  function connect() {
    const target = new URL(url, location.origin);
    if (lastId) target.searchParams.set("since", lastId);
    source = new EventSource(target);
    onStatus("connecting");
    source.addEventListener("ready", (e) => {
      backoff = 1000;
      if (e.lastEventId) lastId = e.lastEventId; // where this stream starts
      onStatus("live");
      if (onReady) onReady(JSON.parse(e.data));
    });
    for (const name of events) {
      source.addEventListener(name, (e) => {
        if (e.lastEventId) lastId = e.lastEventId;
        onEvent(name, JSON.parse(e.data), e.lastEventId);
      });
    }
    source.addEventListener("unauthorized", () => {
      stop();
      toLogin();
    });
    source.onerror = () => {
      if (stopped) return;
      onStatus("offline");
      if (source.readyState === EventSource.CLOSED) {
        source.close();
        clearTimeout(timer);
        timer = setTimeout(retry, backoff);
        backoff = Math.min(backoff * 2, 10000);
      }
    };
  }

  async function retry() {
    if (stopped) return;
    try {
      if ((await loadSession()) === null) {
        toLogin();
        return;
      }
    } catch {
      // the hub is still away: try again later
      timer = setTimeout(retry, backoff);
      backoff = Math.min(backoff * 2, 10000);
      return;
    }
    connect();
  }

  function stop() {
    stopped = true;
    clearTimeout(timer);
    if (source) source.close();
  }

  window.addEventListener("offline", () => onStatus("offline"));
  connect();
  return { stop, lastId: () => lastId };
}
