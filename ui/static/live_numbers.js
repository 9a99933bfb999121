// The job's status line, progress bar and metrics (Images/s, Running loss, Test accuracy), drawn from the
// state the page was drawn with and then, while the job is active, from its feed (feed.js, prepended).
// The page is rerun (a trigger) when the job's phase, and so its buttons, is no longer the one it was
// drawn with, or when the feed has failed 3 times in a row: the page then draws what the server knows.

function build(parentElement) {
  let root = parentElement.querySelector(".cnn-live-numbers");
  if (!root) {
    root = document.createElement("div");
    root.className = "cnn-live-numbers";
    root.innerHTML =
      '<p class="cnn-status">Status: <span class="cnn-status-icon"></span> ' +
      '<strong class="cnn-status-word"></strong><span class="cnn-status-detail"></span></p>' +
      '<div class="cnn-progress"><div class="cnn-progress-text"></div>' +
      '<div class="cnn-progress-track"><div class="cnn-progress-bar"></div></div></div>' +
      '<div class="cnn-metrics"></div>';
    parentElement.appendChild(root);
  }
  return root;
}

function setText(element, text) {
  if (element.textContent !== text) element.textContent = text;
}

function renderMetrics(tiles, metrics) {
  while (tiles.children.length < metrics.length) {
    const tile = document.createElement("div");
    tile.className = "cnn-metric";
    tile.innerHTML =
      '<div class="cnn-metric-label"></div><div class="cnn-metric-value"></div><div class="cnn-metric-delta"></div>';
    tiles.appendChild(tile);
  }
  while (tiles.children.length > metrics.length) tiles.lastChild.remove();
  metrics.forEach((m, i) => {
    const tile = tiles.children[i];
    setText(tile.querySelector(".cnn-metric-label"), m.label);
    setText(tile.querySelector(".cnn-metric-value"), m.value);
    const delta = tile.querySelector(".cnn-metric-delta");
    const falling = Boolean(m.delta) && m.delta.startsWith("-");
    setText(delta, m.delta ? (falling ? "↓ " : "↑ ") + m.delta : "");
    delta.className = "cnn-metric-delta" + (falling ? " better" : " worse");  // a falling loss is good news
  });
}

function render(root, state) {
  setText(root.querySelector(".cnn-status-icon"), state.status_line.icon);
  setText(root.querySelector(".cnn-status-word"), state.status_line.word);
  setText(root.querySelector(".cnn-status-detail"), state.status_line.detail);
  const bar = root.querySelector(".cnn-progress");
  bar.style.display = state.progress ? "" : "none";
  if (state.progress) {
    setText(bar.querySelector(".cnn-progress-text"), state.progress.text);
    bar.querySelector(".cnn-progress-bar").style.width = (100 * state.progress.fraction).toFixed(2) + "%";
  }
  renderMetrics(root.querySelector(".cnn-metrics"), state.metrics);
}

export default function ({ parentElement, data, setTriggerValue }) {
  const root = build(parentElement);
  if (root.cnnUnsubscribe) root.cnnUnsubscribe();
  root.cnnUnsubscribe = null;
  if (root.cnnFeed !== data.feed) {
    root.cnnFeed = data.feed;
    root.cnnSeq = -1;
  }
  const show = (state) => {
    if (state.seq < root.cnnSeq) return;  // never go back to an older state
    root.cnnSeq = state.seq;
    render(root, state);
  };
  show(data.state);
  if (data.feed) {
    root.cnnUnsubscribe = subscribe(data.feed, (state, failures) => {
      if (state) show(state);
      const changed = state ? state.phase !== data.state.phase : failures >= 3;
      if (changed && Date.now() - (root.cnnAsked || 0) > 1500) {
        root.cnnAsked = Date.now();
        setTriggerValue("changed", (state ? state.phase : "unreadable") + " " + root.cnnAsked);
      }
    });
  }
  return () => {
    if (root.cnnUnsubscribe) root.cnnUnsubscribe();
    root.cnnUnsubscribe = null;
  };
}
