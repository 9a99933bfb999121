// The class board (ui/board_live.py): a line of counts, a table of every run (best first) and a chart of the
// class's answer, drawn from the state the page was drawn with and then from the board's feed (feed.js,
// prepended), once a second. Every name and setting is set as text (textContent), never as HTML.

const STATUS_ICONS = { waiting: "hourglass_empty", training: "directions_run", paused: "pause_circle",
  finished: "check_circle", stopped: "stop_circle", diverged: "trending_up", failed: "error",
  interrupted: "warning" };
const COLUMNS = ["#", "Name", "Settings", "Status", "Accuracy", "Time", "Challenge"];

function build(parentElement) {
  let root = parentElement.querySelector(".cnn-board");
  if (!root) {
    root = document.createElement("div");
    root.className = "cnn-board";
    root.innerHTML =
      '<p class="cnn-board-counts"></p><div class="cnn-board-body"><div class="cnn-board-table-box">' +
      '<table class="cnn-board-table"><thead><tr></tr></thead><tbody></tbody></table>' +
      '<p class="cnn-board-empty">No runs on this board yet: they appear here as students press Train.</p>' +
      '</div><div class="cnn-board-chart"></div></div>';
    const head = root.querySelector("thead tr");
    COLUMNS.forEach((name) => {
      const th = document.createElement("th");
      th.textContent = name;
      head.appendChild(th);
    });
    parentElement.appendChild(root);
  }
  return root;
}

function cell(row, text, className) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  row.appendChild(td);
  return td;
}

function statusCell(row, r) {
  const td = cell(row, "", "cnn-board-status " + r.status);
  const icon = document.createElement("span");
  icon.className = "cnn-status-icon";
  icon.textContent = STATUS_ICONS[r.status] || "";
  td.appendChild(icon);
  td.appendChild(document.createTextNode(" " + r.status));
  if (r.progress !== null && r.progress !== undefined) {
    const track = document.createElement("div");
    track.className = "cnn-board-track";
    const bar = document.createElement("div");
    bar.className = "cnn-board-bar";
    bar.style.width = Math.round(100 * r.progress) + "%";
    track.appendChild(bar);
    td.appendChild(track);
  }
}

function counts(c) {
  const parts = [c.runs + (c.runs === 1 ? " run" : " runs"), c.training + " training", c.waiting + " waiting",
    c.finished + " finished"];
  if (c.challenge) parts.push(c.passed + " passed");
  return parts.join(" · ");
}

function render(root, state) {
  root.querySelector(".cnn-board-counts").textContent = counts(state.counts);
  const body = root.querySelector("tbody");
  body.replaceChildren();
  state.rows.forEach((r) => {
    const row = document.createElement("tr");
    row.dataset.status = r.status;
    cell(row, r.rank === null ? "" : String(r.rank), "cnn-board-rank");
    cell(row, r.name, "cnn-board-name").title = r.name;
    cell(row, r.settings_text, "cnn-board-settings").title = r.settings_text;
    statusCell(row, r);
    cell(row, r.accuracy_text, "cnn-board-accuracy");
    cell(row, r.seconds_text, "cnn-board-seconds");
    cell(row, r.result === "passed" ? "passed" : r.result === "not yet" ? "not yet" : "",
      "cnn-board-result " + (r.result === "passed" ? "passed" : ""));
    body.appendChild(row);
  });
  root.querySelector(".cnn-board-empty").style.display = state.rows.length ? "none" : "";
  const chart = root.querySelector(".cnn-board-chart");
  if (window.Plotly) {
    window.Plotly.react(chart, structuredClone(state.figure.data), structuredClone(state.figure.layout),
      { displaylogo: false, responsive: true });
  }
}

export default function ({ parentElement, data }) {
  const root = build(parentElement);
  root.style.setProperty("--cnn-board-height", data.height);
  if (root.cnnUnsubscribe) root.cnnUnsubscribe();
  let seq = -1;
  const show = (state) => {
    if (!state || state.seq < seq) return;
    seq = state.seq;
    render(root, state);
  };
  const start = () => {
    show(data.state);
    root.cnnUnsubscribe = subscribe(data.feed, (state) => show(state));
  };
  render(root, data.state);  // the table at once, the chart once Plotly.js is in
  seq = data.state.seq;
  loadPlotly(data.src).then(start, (err) => {
    root.querySelector(".cnn-board-chart").textContent = "The chart cannot be drawn: " + err.message;
  });
  return () => {
    if (root.cnnUnsubscribe) root.cnnUnsubscribe();
    root.cnnUnsubscribe = null;
  };
}
