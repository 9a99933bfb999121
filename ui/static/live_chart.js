// A Plotly chart that the live view updates in place (feed.js is prepended): drawn once with
// Plotly.react, then new points are appended with Plotly.extendTraces and moved axes set with
// Plotly.relayout. Only Plotly.js's public API is used. st.plotly_chart would throw the chart away and
// build it again on every change, which costs the browser the CPU that training needs on a small machine.
//
// data: {figure: {data, layout}, layout_key, src (Plotly.js), height (CSS), feed (URL or null), series (the
// feed's traces to follow), seq (the feed's sequence number of the figure), ranges ({x, y} or null)}.

function lastPointsMatch(old, fresh, n) {
  return n === 0 || (fresh.x[n - 1] === old.x[n - 1] && fresh.y[n - 1] === old.y[n - 1]);
}

// How the fresh traces relate to the drawn ones: "same" (nothing new), "extends" (the same traces with
// points appended) or "other" (anything else: drawn anew).
function compare(drawn, fresh) {
  if (!drawn || drawn.length !== fresh.length) return "other";
  let same = true;
  for (let i = 0; i < fresh.length; i++) {
    const old = drawn[i];
    const n = old.x ? old.x.length : 0;
    if (fresh[i].mode !== old.mode || fresh[i].x.length < n || !lastPointsMatch(old, fresh[i], n)) return "other";
    if (fresh[i].x.length > n) same = false;
  }
  return same ? "same" : "extends";
}

function withRanges(layout, ranges) {
  // a copy each time: Plotly keeps the layout it is given and writes into it (autorange: true)
  const copy = structuredClone(layout);
  if (ranges) {
    copy.xaxis = { ...copy.xaxis, range: ranges.x, autorange: false };
    copy.yaxis = { ...copy.yaxis, range: ranges.y, autorange: false };
  }
  return copy;
}

function draw(div, traces, layout, key, ranges) {
  const Plotly = window.Plotly;
  const how = div.cnnKey === key ? compare(div.data, traces) : "other";
  if (how === "other") {
    Plotly.react(div, structuredClone(traces), withRanges(layout, ranges), { displaylogo: false, responsive: true });
    div.cnnKey = key;
    div.cnnRanges = JSON.stringify(ranges || null);
    return;
  }
  const moved = JSON.stringify(ranges || null) !== div.cnnRanges;
  if (moved && ranges) {  // the data outgrew the fixed axes
    Plotly.relayout(div, { "xaxis.range": ranges.x, "yaxis.range": ranges.y });
    div.cnnRanges = JSON.stringify(ranges);
  }
  if (how === "extends") {
    const counts = div.data.map((t) => t.x.length);
    Plotly.extendTraces(div, { x: traces.map((t, i) => t.x.slice(counts[i])),
                               y: traces.map((t, i) => t.y.slice(counts[i])) }, traces.map((t, i) => i));
  }
}

export default function ({ parentElement, data }) {
  let div = parentElement.querySelector(".cnn-live-chart");
  if (!div) {
    div = document.createElement("div");
    div.className = "cnn-live-chart";
    parentElement.appendChild(div);
  }
  div.style.height = data.height;
  if (div.cnnUnsubscribe) div.cnnUnsubscribe();
  div.cnnUnsubscribe = null;
  if (div.cnnFeed !== data.feed) {
    div.cnnFeed = data.feed;
    div.cnnSeq = -1;
  }
  const show = (traces, seq, ranges) => {
    if (seq < div.cnnSeq) return;  // never go back to an older state
    div.cnnSeq = seq;
    draw(div, traces, data.figure.layout, data.layout_key, ranges);
  };
  const start = () => {
    show(data.figure.data, data.seq, data.ranges);
    if (data.feed) {
      div.cnnUnsubscribe = subscribe(data.feed, (state) => {
        if (state) show(state.traces[data.series], state.seq, (state.ranges || {})[data.series]);
      });
    }
  };
  if (window.Plotly) {
    start();
  } else {
    loadPlotly(data.src).then(start, (err) => {
      div.textContent = "The chart cannot be drawn: " + err.message;
    });
  }
  return () => {
    if (div.cnnUnsubscribe) div.cnnUnsubscribe();
    div.cnnUnsubscribe = null;
  };
}
