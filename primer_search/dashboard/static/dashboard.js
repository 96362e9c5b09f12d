// primer-search dashboard: polls the server's JSON endpoints and draws them with Chart.js.
// Plain browser JavaScript, no build step. The server is read-only; so is this page.
"use strict";

const POLL_MS = 1500;
const STORE_COLOURS = ["#2563eb", "#dc2626", "#059669", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#4b5563"];
const STATUS_COLOURS = {
  ok: "#2563eb", hurdle: "#f59e0b", duplicate: "#9ca3af", pending: "#64748b",
  invalid: "#7c3aed", nan: "#dc2626", untrained: "#92400e", oom: "#db2777",
  timeout: "#65a30d", error: "#111827",
};
const PLOTTED = ["ok", "hurdle", "duplicate"];   // finite fitness; failures have none
// Top-table columns: key, heading, formatter. A column shows where some row has a value.
const TOP_COLUMNS = [
  ["id", "id", (v) => "#" + v],
  ["parent", "parent", (v) => (v == null ? "-" : "#" + v)],
  ["status", "status", null],
  ["fitness", "fitness", (v) => fmt(v, 5)],
  ["stages", "stages", String],
  ["perplexity", "LM ppl", (v) => fmt(v, 4)],
  ["word_perplexity", "word ppl", (v) => fmt(v, 4)],
  ["bits_per_byte", "bits/byte", (v) => fixed(v, 3)],
  ["train_loss", "train loss", (v) => fixed(v, 3)],
  ["recall_accuracy", "recall acc", (v) => fixed(v, 3)],
  ["recall_loss", "recall loss", (v) => fixed(v, 3)],
  ["context_use", "context use", (v) => (v == null ? "-" : (v >= 0 ? "+" : "") + v.toFixed(3))],
  ["steps", "steps", String],
  ["recall_steps", "recall steps", String],
  ["params", "params", (v) => v.toLocaleString("en-US")],
  ["step_ms", "step ms", (v) => fixed(v, 1)],
  ["tokens_per_s", "tokens/s", (v) => Math.round(v).toLocaleString("en-US")],
  ["mutation", "mutation", null],
];

const state = { stores: [], views: [], bestChart: null, detail: null, pollFailed: false };

// ---- formatting ---------------------------------------------------------------------

function fmt(v, digits) {
  if (v == null || !isFinite(v)) return "-";
  return Number(v.toPrecision(digits)).toString();
}
// A log axis where values are positive and span more than a factor of 5.
function logScale(values) {
  if (!values.length) return false;
  let lo = Infinity, hi = -Infinity;
  for (const v of values) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
  return lo > 0 && hi / lo > 5;
}
// Tick labels of a fitness axis: Chart.js's own on a linear axis; on a log axis only
// 1, 2 and 5 times a power of ten, which keeps a narrow range from crowding its labels.
function fitnessTick(value, index, ticks) {
  if (this.type !== "logarithmic") return Chart.Ticks.formatters.numeric.call(this, value, index, ticks);
  const mantissa = value / 10 ** Math.floor(Math.log10(value) + 1e-9);
  return [1, 2, 5].some((m) => Math.abs(mantissa - m) < 1e-6) ? fmt(value, 3) : "";
}
function fixed(v, digits) { return v == null || !isFinite(v) ? "-" : v.toFixed(digits); }
function ago(seconds) {
  if (seconds == null) return "";
  if (seconds < 60) return Math.max(0, Math.round(seconds)) + " s ago";
  if (seconds < 3600) return Math.round(seconds / 60) + " min ago";
  if (seconds < 86400) return (seconds / 3600).toFixed(1) + " h ago";
  return (seconds / 86400).toFixed(1) + " days ago";
}
function duration(seconds) {
  if (seconds < 60) return seconds + " s";
  if (seconds < 3600) return seconds / 60 + " min";
  return seconds / 3600 + " h";
}
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v;
    else if (k === "dataset") Object.assign(node.dataset, v);
    else if (k === "style") node.style.cssText = v;
    else node.setAttribute(k, v);
  }
  for (const c of children) if (c != null) node.append(c instanceof Node ? c : String(c));
  return node;
}
function statusBadge(status) {
  return el("span", { class: "status", style: `background:${STATUS_COLOURS[status] || "#555"}` }, status);
}
function linkTo(storeIndex, id, text) {
  const a = el("a", { href: `#store=${storeIndex}&id=${id}` }, text || "#" + id);
  a.addEventListener("click", (e) => { e.preventDefault(); openCandidate(storeIndex, id); });
  return a;
}

// ---- fetching -------------------------------------------------------------------------

async function getJSON(url) {
  const response = await fetch(url, { cache: "no-store" });
  let body;
  try { body = await response.json(); } catch (e) { body = { error: `${response.status} ${response.statusText}` }; }
  if (!response.ok) throw new Error(body.error || `${response.status} ${response.statusText}`);
  return body;
}

async function start() {
  state.stores = await getJSON("/api/stores");
  const container = document.getElementById("stores");
  container.style.setProperty("--columns", Math.min(state.stores.length, 2));
  state.views = state.stores.map((s, i) => makeStoreView(s, i, container));
  state.bestChart = makeBestChart();
  document.getElementById("detail-close").addEventListener("click", closeDetail);
  document.addEventListener("keydown", (e) => { if (e.key === "Escape") closeDetail(); });
  await poll();
  openFromHash();
  window.addEventListener("hashchange", openFromHash);
}

async function poll() {
  const results = await Promise.allSettled(state.views.map(refreshStore));
  const failed = results.filter((r) => r.status === "rejected");
  const live = document.getElementById("live");
  const now = new Date().toLocaleTimeString("en-GB");
  if (failed.length === results.length && results.length) {
    live.textContent = `server not reachable (${failed[0].reason.message}); retrying`;
    live.classList.add("down");
  } else {
    live.textContent = `live · read ${now} · every ${POLL_MS / 1000} s · read-only`;
    live.classList.remove("down");
  }
  for (const view of state.views) updateAges(view);
  setTimeout(poll, POLL_MS);
}

async function refreshStore(view) {
  const token = view.data ? view.data.token.join(",") : "";
  let data;
  try {
    data = await getJSON(`/api/stores/${view.index}/overview?token=${token}`);
  } catch (e) {
    view.error.textContent = e.message;
    view.error.hidden = false;
    if (e instanceof TypeError) throw e;   // the server is gone: fetch itself failed
    return;
  }
  view.error.hidden = true;
  view.readAt = Date.now() / 1000;
  if (data.unchanged) return;
  view.data = data;
  renderStore(view);
  renderSummary();
  updateBestChart();
}

// ---- the comparison: best so far, one line per store ---------------------------------

function makeBestChart() {
  return new Chart(document.getElementById("best-chart"), {
    type: "line",
    data: { datasets: [] },
    options: {
      animation: false, maintainAspectRatio: false, parsing: false, normalized: true,
      interaction: { mode: "nearest", intersect: false },
      scales: {
        x: { type: "linear", title: { display: true, text: "candidates finished" }, min: 0 },
        y: { type: "linear", grace: "5%", ticks: { callback: fitnessTick, autoSkip: false },
             title: { display: true, text: "best fitness so far" } },
      },
      plugins: {
        tooltip: { callbacks: { label: (c) => `${c.dataset.label}: #${c.raw.id} ${fmt(c.raw.y, 5)} after ${c.raw.x}` } },
      },
      onClick: (evt, elements, chart) => {
        if (!elements.length) return;
        const e = elements[0];
        openCandidate(chart.data.datasets[e.datasetIndex].storeIndex, chart.data.datasets[e.datasetIndex].data[e.index].id);
      },
    },
  });
}

function updateBestChart() {
  const datasets = state.views.filter((v) => v.data).map((v) => ({
    label: v.store.name, storeIndex: v.index, stepped: "after", pointRadius: 0, pointHitRadius: 6,
    borderColor: v.colour, backgroundColor: v.colour, borderWidth: 2,
    data: v.data.best_so_far.filter((p) => p.fitness != null).map((p) => ({ x: p.n, y: p.fitness, id: p.id })),
  }));
  const all = datasets.flatMap((d) => d.data.map((p) => p.y));
  state.bestChart.options.scales.y.type = logScale(all) ? "logarithmic" : "linear";
  state.bestChart.data.datasets = datasets;
  state.bestChart.update("none");
}

function renderSummary() {
  const body = document.querySelector("#summary tbody");
  body.replaceChildren(...state.views.filter((v) => v.data).map((v) => {
    const d = v.data;
    const use = d.workers.use;
    return el("tr", {},
      el("td", {}, el("span", { class: "swatch", style: `background:${v.colour}` }), " ", d.name),
      el("td", { class: "num", "data-testid": `summary-count-${v.index}` }, d.counts.total),
      el("td", { class: "num" }, d.counts.finished),
      el("td", { class: "num" }, d.counts.pending),
      el("td", { class: "num" }, d.best ? linkTo(v.index, d.best.id) : "-"),
      el("td", { class: "num" }, d.best ? fmt(d.best.fitness, 5) : "-"),
      el("td", { class: "num" }, d.throughput.per_minute == null ? "-" : d.throughput.per_minute.toFixed(1)),
      el("td", { class: "num" }, use == null ? "-" : Math.round(100 * use) + "%"),
      el("td", { class: "changed-cell" }, ""),
    );
  }));
}

// ---- one store's panel -----------------------------------------------------------------

function makeStoreView(store, index, container) {
  const node = document.getElementById("store-template").content.firstElementChild.cloneNode(true);
  node.dataset.store = index;
  const colour = STORE_COLOURS[index % STORE_COLOURS.length];
  node.querySelector(".swatch").style.background = colour;
  node.querySelector(".store-name").textContent = store.name;
  node.querySelector(".store-path").textContent = store.path;
  node.querySelector(".count").dataset.testid = `count-${index}`;
  const view = { store, index, node, colour, data: null, readAt: null,
                 error: node.querySelector(".error") };
  node.querySelector(".open-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const id = parseInt(e.target.querySelector("input").value, 10);
    if (id > 0) openCandidate(index, id);
  });
  container.append(node);
  view.fitnessChart = new Chart(node.querySelector(".fitness-chart"), {
    type: "scatter",
    data: { datasets: PLOTTED.map((status) => ({
      label: status, data: [], pointRadius: 3, pointHoverRadius: 5,
      backgroundColor: STATUS_COLOURS[status], borderColor: STATUS_COLOURS[status] })) },
    options: {
      animation: false, maintainAspectRatio: false, parsing: false, normalized: true,
      scales: {
        x: { type: "linear", min: 0, title: { display: true, text: "candidate (finishing order)" } },
        y: { type: "linear", grace: "5%", ticks: { callback: fitnessTick, autoSkip: false },
             title: { display: true, text: "fitness" } },
      },
      plugins: { tooltip: { callbacks: { label: (c) => `#${c.raw.id} ${c.dataset.label} ${fmt(c.raw.y, 5)}` +
                                                       (c.raw.stages ? ` (${c.raw.stages} stages)` : "") } } },
      onClick: (evt, elements, chart) => {
        if (elements.length) openCandidate(index, chart.data.datasets[elements[0].datasetIndex].data[elements[0].index].id);
      },
    },
  });
  view.stagesChart = new Chart(node.querySelector(".stages-chart"), {
    type: "bar",
    data: { labels: [], datasets: [
      { label: "stopped at its hurdle", data: [], backgroundColor: STATUS_COLOURS.hurdle },
      { label: "trained the full budget", data: [], backgroundColor: STATUS_COLOURS.ok },
    ] },
    options: {
      animation: false, maintainAspectRatio: false,
      scales: { x: { stacked: true, title: { display: true, text: "stages completed" } },
                y: { stacked: true, beginAtZero: true, ticks: { precision: 0 }, title: { display: true, text: "candidates" } } },
    },
  });
  view.throughputChart = new Chart(node.querySelector(".throughput-chart"), {
    type: "bar",
    data: { labels: [], datasets: [
      { label: "finished", data: [], backgroundColor: "#93c5fd", grouped: false, order: 2 },
      { label: "trained (ok or hurdle)", data: [], backgroundColor: colour, grouped: false, order: 1,
        barPercentage: 0.6 },
    ] },
    options: {
      animation: false, maintainAspectRatio: false,
      scales: { x: { title: { display: true, text: "minutes since the first candidate" } },
                y: { beginAtZero: true, ticks: { precision: 0 }, title: { display: true, text: "candidates" } } },
    },
  });
  return view;
}

function renderStore(view) {
  const d = view.data, n = view.node;
  n.querySelector(".count").textContent = d.counts.total;
  n.querySelector(".finished").textContent = d.counts.finished;
  n.querySelector(".pending").textContent = d.counts.pending;
  const best = n.querySelector(".best-link");
  if (d.best) {
    best.textContent = `#${d.best.id} ${fmt(d.best.fitness, 5)}`;
    best.onclick = (e) => { e.preventDefault(); openCandidate(view.index, d.best.id); };
  } else {
    best.textContent = "-";
    best.onclick = (e) => e.preventDefault();
  }
  const t = d.throughput;
  n.querySelector(".rate").textContent = t.per_minute == null ? "" :
    `${t.per_minute.toFixed(1)} finished/min, ${t.trained_per_minute.toFixed(1)} trained/min`;
  const limit = d.config.max_candidates ? ` of ${d.config.max_candidates}` : "";
  n.querySelector(".count").title = `${d.counts.total}${limit} candidates (search rows, pending included)`;

  // Status chips, commonest first.
  const chips = Object.entries(d.counts.by_status).sort((a, b) => b[1] - a[1]);
  n.querySelector(".chips").replaceChildren(...chips.map(([s, k]) =>
    el("span", { class: "chip", style: `background:${STATUS_COLOURS[s] || "#555"}`, "data-status": s }, `${s} ${k}`)));

  // Fitness by status.
  const byStatus = Object.fromEntries(PLOTTED.map((s) => [s, []]));
  let unplotted = 0;
  for (const c of d.candidates) {
    if (c.fitness != null && byStatus[c.status]) byStatus[c.status].push({ x: c.order, y: c.fitness, id: c.id, stages: c.stages });
    else unplotted += 1;
  }
  view.fitnessChart.data.datasets.forEach((ds) => { ds.data = byStatus[ds.label]; });
  const ys = d.candidates.filter((c) => c.fitness != null).map((c) => c.fitness);
  view.fitnessChart.options.scales.y.type = logScale(ys) ? "logarithmic" : "linear";
  view.fitnessChart.update("none");
  n.querySelector(".fitness-note").textContent = unplotted ? `(${unplotted} failed, not plotted: no finite fitness)` : "";

  // Hurdle stages.
  const st = d.stages;
  view.stagesChart.data.labels = Array.from({ length: st.stages }, (_, k) => String(k + 1));
  view.stagesChart.data.datasets[0].data = st.stopped;
  view.stagesChart.data.datasets[1].data = st.completed;
  view.stagesChart.update("none");

  // Throughput.
  if (t.bucket_s) {
    const span = t.finished.length * t.bucket_s;
    const [unit, name] = span <= 300 ? [1, "seconds"] : span <= 5 * 3600 ? [60, "minutes"] : [3600, "hours"];
    view.throughputChart.options.scales.x.title.text = `${name} since the first candidate`;
    view.throughputChart.data.labels = t.finished.map((_, k) => +((k * t.bucket_s) / unit).toFixed(1));
    view.throughputChart.data.datasets[0].data = t.finished;
    view.throughputChart.data.datasets[1].data = t.trained;
    n.querySelector(".throughput-note").textContent = `(per ${duration(t.bucket_s)})`;
  }
  view.throughputChart.update("none");

  // Workers.
  const w = d.workers;
  n.querySelector(".workers-note").textContent =
    `(${w.configured ?? "?"} configured, ${w.in_flight} in flight` +
    (w.use == null ? ")" : `, ${Math.round(100 * w.use)}% busy over ${Math.round(w.span_s)} s)`);
  n.querySelector("table.workers tbody").replaceChildren(...w.per_worker.map((x) => el("tr", {},
    el("td", { title: `${x.worker} on ${x.node || "?"}` }, x.worker),
    el("td", { class: "num" }, x.candidates),
    el("td", { class: "num" }, x.busy_s.toFixed(1)),
    el("td", {}, el("span", { class: "bar", style: `width:${Math.round(100 * Math.min(1, x.share || 0))}px` }),
       " ", x.share == null ? "-" : Math.round(100 * x.share) + "%"))));

  renderTop(view);
  renderLatest(view);
}

function renderTop(view) {
  const rows = view.data.top;
  const columns = TOP_COLUMNS.filter(([key]) => rows.some((r) => r[key] != null && r[key] !== "" &&
                                                            !(key === "recall_steps" && r[key] === 0)));
  const table = view.node.querySelector("table.top");
  table.querySelector("thead").replaceChildren(el("tr", {}, el("th", { class: "num" }, "rank"),
    ...columns.map(([key, head]) => el("th", { class: key === "mutation" || key === "status" ? "" : "num" }, head))));
  table.querySelector("tbody").replaceChildren(...rows.map((r, rank) => {
    const tr = el("tr", { dataset: { id: r.id } }, el("td", { class: "num" }, rank + 1),
      ...columns.map(([key, , f]) => {
        if (key === "status") return el("td", {}, statusBadge(r.status));
        if (key === "mutation") return el("td", { class: "mutation", title: r.mutation }, r.mutation);
        return el("td", { class: "num" }, r[key] == null ? "-" : f(r[key]));
      }));
    tr.addEventListener("click", () => openCandidate(view.index, r.id));
    return tr;
  }));
  markSelected();
}

function renderLatest(view) {
  const body = view.node.querySelector("table.latest tbody");
  body.replaceChildren(...view.data.latest.map((r) => {
    const tr = el("tr", { dataset: { id: r.id } },
      el("td", { class: "num" }, "#" + r.id),
      el("td", { class: "num" }, r.parent == null ? "-" : "#" + r.parent),
      el("td", {}, statusBadge(r.status)),
      el("td", { class: "num" }, fmt(r.fitness, 5)),
      el("td", { class: "num" }, r.status === "pending" ? "" : r.stages),
      el("td", {}, r.worker || ""),
      el("td", { class: "mutation", title: r.mutation }, r.mutation));
    tr.addEventListener("click", () => openCandidate(view.index, r.id));
    return tr;
  }));
  markSelected();
}

function updateAges(view) {
  if (!view.data) return;
  const age = view.data.last_change == null ? null : Date.now() / 1000 - view.data.last_change;
  const text = age == null ? "no candidates yet" : `last change ${ago(age)}`;
  view.node.querySelector(".changed").textContent = text;
  const row = document.querySelectorAll("#summary tbody tr")[state.views.filter((v) => v.data).indexOf(view)];
  if (row) row.querySelector(".changed-cell").textContent = text;
}

// ---- one candidate: program, diff to parent, lineage ------------------------------------

async function openCandidate(storeIndex, id) {
  const panel = document.getElementById("detail");
  const error = document.getElementById("detail-error");
  state.detail = { storeIndex, id };
  const hash = `#store=${storeIndex}&id=${id}`;
  if (location.hash !== hash) history.replaceState(null, "", hash);
  panel.hidden = false;
  document.body.classList.add("detail-open");
  document.getElementById("detail-title").textContent = `#${id} · ${state.stores[storeIndex].name}`;
  let c;
  try {
    c = await getJSON(`/api/stores/${storeIndex}/candidates/${id}`);
  } catch (e) {
    error.textContent = e.message;
    error.hidden = false;
    for (const sel of ["#detail-meta", "#detail-code", "#detail-diff", "#detail-lineage"]) document.querySelector(sel).replaceChildren();
    return;
  }
  if (!state.detail || state.detail.id !== id || state.detail.storeIndex !== storeIndex) return;  // another was clicked
  error.hidden = true;
  panel.scrollTop = 0;   // a new candidate reads from its top
  const meta = [
    ["status", statusBadge(c.status)],
    ["fitness", fmt(c.fitness, 6) + (c.stages ? ` after ${c.stages} stage${c.stages > 1 ? "s" : ""}` : "")],
    ["parent", c.parent == null ? "- (a seed)" : linkTo(storeIndex, c.parent)],
    ["mutation", c.mutation],
  ];
  if (c.duplicate_of != null) meta.push(["duplicate of", linkTo(storeIndex, c.duplicate_of)]);
  if (c.reason) meta.push(["reason", c.reason]);
  const tasks = [
    ["language model", [["ppl", fmt(c.perplexity, 5)], ["word ppl", fmt(c.word_perplexity, 5)],
                        ["bits/byte", fixed(c.bits_per_byte, 3)], ["train loss", fixed(c.train_loss, 3)]]],
    ["recall task", [["accuracy", fixed(c.recall_accuracy, 3)], ["loss", fixed(c.recall_loss, 3)],
                     ["steps", c.recall_steps || null]]],
    ["context use", [["nats", c.context_use == null ? null : (c.context_use >= 0 ? "+" : "") + c.context_use.toFixed(3)]]],
    ["training", [["steps", c.steps], ["params", c.params == null ? null : c.params.toLocaleString("en-US")],
                  ["step ms", fixed(c.step_ms, 1)]]],
  ];
  for (const [task, values] of tasks) {
    const shown = values.filter(([, v]) => v != null && v !== "-" && v !== 0);
    if (shown.length) meta.push([task, shown.map(([k, v]) => `${k} ${v}`).join(" · ")]);
  }
  if (c.stage_fitness.length > 1) meta.push(["stage fitness", c.stage_fitness.map((x) => fmt(x, 5)).join(" → ")]);
  if (c.worker) meta.push(["worker", c.worker]);
  if (c.finished_at) meta.push(["finished", new Date(c.finished_at * 1000).toLocaleString("en-GB")]);
  document.getElementById("detail-meta").replaceChildren(...meta.map(([k, v]) => el("tr", {}, el("th", {}, k), el("td", {}, v))));
  document.getElementById("detail-code").textContent = c.code;
  const diff = document.getElementById("detail-diff");
  const note = document.getElementById("detail-diff-note");
  if (c.parent == null) {
    diff.replaceChildren("(a seed: no parent)");
    note.textContent = "";
  } else if (!c.diff.length) {
    diff.replaceChildren("(the same program text as its parent)");
    note.textContent = `#${c.parent} → #${c.id}`;
  } else {
    diff.replaceChildren(...c.diff.map((line) => el("span", {
      class: line.startsWith("@@") ? "hunk" : line.startsWith("+") && !line.startsWith("+++") ? "add" :
             line.startsWith("-") && !line.startsWith("---") ? "del" : "" }, line + "\n")));
    note.textContent = `#${c.parent} → #${c.id}`;
  }
  document.getElementById("detail-lineage").replaceChildren(...c.lineage.map((a) => el("li", {},
    a.id === c.id ? el("b", {}, "#" + a.id) : linkTo(storeIndex, a.id), " ",
    statusBadge(a.status), " ", fmt(a.fitness, 5), " ", el("span", { class: "mut" }, a.mutation))));
  markSelected();
}

function closeDetail() {
  document.getElementById("detail").hidden = true;
  document.body.classList.remove("detail-open");
  state.detail = null;
  if (location.hash) history.replaceState(null, "", location.pathname);
  markSelected();
}

function markSelected() {
  document.querySelectorAll("tr.selected").forEach((tr) => tr.classList.remove("selected"));
  if (!state.detail) return;
  const store = document.querySelector(`section.store[data-store="${state.detail.storeIndex}"]`);
  if (store) store.querySelectorAll(`tr[data-id="${state.detail.id}"]`).forEach((tr) => tr.classList.add("selected"));
}

function openFromHash() {
  const m = /^#store=(\d+)&id=(\d+)$/.exec(location.hash);
  if (m && +m[1] < state.stores.length) openCandidate(+m[1], +m[2]);
}

start().catch((e) => {
  const live = document.getElementById("live");
  live.textContent = `cannot start: ${e.message}`;
  live.classList.add("down");
});
