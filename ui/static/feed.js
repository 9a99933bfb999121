// The live view's feed: one poller per job in the page, shared by every element that shows that job.
// It asks the app's route (ui/live.py) for the job's state, sending the sequence number of the state it
// has; the server answers 204 (nothing new) or the new state. Each listener gets (state, 0) for a new
// state, or (null, failures so far) when the feed cannot be read.
// How often: as the newest state says (poll_ms: twice a second until the first loss point is drawn, then
// every 2 s, since each redraw takes the browser CPU that training on a small machine needs: every second
// took 0.053-0.073 of a core, every 2 s 0.029-0.046; docs/benchmarks.md).
const FIRST_MS = 500;

function subscribe(url, listener) {
  const feeds = window.__cnnFeeds || (window.__cnnFeeds = new Map());
  let feed = feeds.get(url);
  if (!feed) {
    feed = { listeners: new Set(), failures: 0, seq: -1, state: null };
    feeds.set(url, feed);
    const tick = async () => {
      if (!feed.listeners.size) {
        feeds.delete(url);
        return;
      }
      const began = Date.now();
      if (!document.hidden) {  // a tab in the background costs nothing
        try {
          const response = await fetch(url + (url.includes("?") ? "&" : "?") + "seq=" + feed.seq, { cache: "no-store" });
          if (response.status !== 204) {
            if (!response.ok) throw new Error("HTTP " + response.status);
            feed.state = await response.json();
            feed.seq = feed.state.seq;
            feed.listeners.forEach((each) => each(feed.state, 0));
          }
          feed.failures = 0;
        } catch (err) {
          feed.failures += 1;
          feed.listeners.forEach((each) => each(null, feed.failures));
        }
      }
      const every = (feed.state && feed.state.poll_ms) || FIRST_MS;
      setTimeout(tick, Math.max(50, every - (Date.now() - began)));
    };
    setTimeout(tick, FIRST_MS);
  } else if (feed.state) {
    setTimeout(() => listener(feed.state, 0), 0);  // a late listener starts from the newest state
  }
  feed.listeners.add(listener);
  return () => feed.listeners.delete(listener);
}

// Plotly.js, loaded once for the page from the app's own route (offline).
function loadPlotly(src) {
  if (!window.__cnnPlotly) {
    window.__cnnPlotly = new Promise((resolve, reject) => {
      const script = document.createElement("script");
      script.src = src;
      script.onload = resolve;
      script.onerror = () => reject(new Error("could not load " + src));
      document.head.appendChild(script);
    });
  }
  return window.__cnnPlotly;
}
