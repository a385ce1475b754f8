// The page of `berth audit report --html`. Its data (the JSON above, built
// by webhook/src/audit/report/) is already aggregated: this only draws it
// with Chart.js and pages the table. Text from the log is only ever set as
// text (textContent, option labels, chart labels), never parsed as HTML: an
// object's fields are whatever its author wrote.
"use strict";
(function () {
  const data = JSON.parse(document.getElementById("data").textContent);
  const $ = (id) => document.getElementById(id);
  const el = (tag, attrs, ...children) => {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (key === "class") node.className = value; else node.setAttribute(key, value);
    }
    for (const child of children) node.append(child);
    return node;
  };
  const number = (n) => n.toLocaleString("en-US");
  const plural = (n, word) => `${number(n)} ${word}${n === 1 ? "" : "s"}`;
  const DECISIONS = ["denied", "error", "mutated"];
  const DECISION_LABELS = ["Denied", "Errors", "Mutated"];
  const DECISION_COLOURS = ["#d64545", "#e0a100", "#3f8f6b"];
  // Tableau 10: distinct, and legible on white.
  const PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"];
  const OTHER = "(other policies)";

  Chart.defaults.font.family = getComputedStyle(document.body).fontFamily;
  Chart.defaults.font.size = 12;
  Chart.defaults.color = "#52606d";
  Chart.defaults.animation = false;
  Chart.defaults.maintainAspectRatio = false;

  // ---- Header: range, counts, what was read --------------------------------
  const utc = (iso) => iso ? iso.replace("T", " ").replace(/\.\d+Z$/, "Z").replace("Z", " UTC") : "";
  const from = data.since || data.first, to = data.until || data.last;
  const window_ = `${utc(from)} to ${utc(to)}`, records_ = `${utc(data.first)} to ${utc(data.last)}`;
  $("range").textContent = data.counts.total === 0
    ? `No records match${data.since || data.until ? ` from ${window_}` : ""}.`
    : window_ === records_ ? `Records from ${records_}` : `${window_} · records from ${records_}`;
  $("generated").textContent = `Generated ${utc(data.generated)} by berth ${data.version}`;
  const cards = [
    ["Records", data.counts.total, ""], ["Denied", data.counts.denied, "denied"],
    ["Policy errors", data.counts.errors, "error"], ["Mutated", data.counts.mutated, "mutated"],
    ["Dry runs", data.counts.dryRun, ""],
  ];
  for (const [label, value, kind] of cards) {
    $("counts").append(el("div", { class: `card ${kind}` }, el("div", { class: "value" }, number(value)), el("div", { class: "label" }, label)));
  }
  const fileCount = data.logs.reduce((n, log) => n + log.files.length, 0);
  $("sources-summary").textContent = `${plural(data.logs.length, "replica")}, ${plural(fileCount, "file")}`;
  $("filters").textContent = data.filters.length ? `Filters: ${data.filters.join(" ")}` : "No filters: every record of these logs.";
  for (const log of data.logs) {
    log.files.forEach((file, i) => {
      $("files").append(el("tr", {}, el("td", {}, i === 0 ? log.replica : ""), el("td", {}, file.path), el("td", { class: "num" }, number(file.records))));
    });
  }

  // ---- Charts --------------------------------------------------------------
  const timeline = data.timeline;
  const stepLabel = (ms) => {
    const s = ms / 1000;
    if (s < 60) return `${s} s`;
    if (s < 3600) return `${s / 60} min`;
    if (s < 86400) return `${s / 3600} h`;
    return `${s / 86400} d`;
  };
  if (timeline.series.length === 0) {
    $("chart-timeline").parentElement.hidden = true;
    $("timeline-empty").hidden = false;
  } else {
    const buckets = timeline.series[0].counts.length;
    const withSeconds = timeline.stepMs < 60000, withTime = timeline.stepMs < 86400000;
    const labels = Array.from({ length: buckets }, (_, i) => {
      const iso = new Date(timeline.startMs + i * timeline.stepMs).toISOString().replace("T", " ");
      return iso.slice(0, withSeconds ? 19 : withTime ? 16 : 10);
    });
    $("step").textContent = `(one bar per ${stepLabel(timeline.stepMs)}, UTC)`;
    const datasets = timeline.series.map((series, i) => ({
      label: series.name, data: series.counts, stack: "denials",
      backgroundColor: series.name === OTHER ? "#bab0ac" : PALETTE[i % PALETTE.length],
    }));
    chart("chart-timeline", "Denials over time by policy", {
      type: "bar",
      data: { labels, datasets },
      options: {
        interaction: { mode: "index", intersect: false },
        scales: { x: { stacked: true, ticks: { maxRotation: 0, autoSkipPadding: 16 } }, y: { stacked: true, beginAtZero: true, ticks: { precision: 0 }, title: { display: true, text: "denials" } } },
        plugins: { legend: { position: "bottom" } },
      },
    });
  }

  const short = (text, n) => text.length > n ? text.slice(0, n - 1) + "…" : text;
  // A bar chart's height follows its bars, so that two bars are not two slabs.
  const fitHeight = (id, bars) => { $(id).parentElement.style.height = `${Math.min(260, 76 + 30 * Math.max(bars, 2))}px`; };
  function ranking(id, rank, noun, blank) {
    const names = rank.rows.map(([name]) => name || blank);
    fitHeight(`chart-${id}`, names.length);
    chart(`chart-${id}`, `Top ${id} by decision`, {
      type: "bar",
      data: {
        labels: names.map((n) => short(n, 48)),
        datasets: DECISIONS.map((_, d) => ({
          label: DECISION_LABELS[d], data: rank.rows.map(([, counts]) => counts[d]),
          backgroundColor: DECISION_COLOURS[d], stack: "decisions", maxBarThickness: 22,
        })).filter((set) => set.data.some((n) => n > 0)),
      },
      options: {
        indexAxis: "y",
        scales: { x: { stacked: true, beginAtZero: true, ticks: { precision: 0 } }, y: { stacked: true } },
        plugins: {
          legend: { position: "bottom" },
          tooltip: { callbacks: { title: (items) => names[items[0].dataIndex] } },
        },
      },
    });
    $(`more-${id}`).textContent = rank.others ? `and ${plural(rank.others, noun)} more, with ${plural(rank.otherRecords, "record")}` : "";
  }
  ranking("namespaces", data.namespaces, "namespace", "(none)");
  ranking("policies", data.policies, "policy", "(none)");
  ranking("users", data.users, "user", "(unknown)");
  ranking("reasons", data.reasons, "reason", "(none)");

  if (data.registries.length === 0) {
    $("chart-registries").closest(".split").hidden = true;
    $("registries-empty").hidden = false;
  } else {
    fitHeight("chart-registries", data.registries.length);
    chart("chart-registries", "Denied records by image registry", {
      type: "bar",
      data: {
        labels: data.registries.map((r) => r.registry),
        datasets: [{ label: "Denied records", data: data.registries.map((r) => r.records), backgroundColor: "#4e79a7", maxBarThickness: 22 }],
      },
      options: { indexAxis: "y", scales: { x: { beginAtZero: true, ticks: { precision: 0 } } }, plugins: { legend: { display: false } } },
    });
    for (const registry of data.registries) {
      registry.images.forEach(([image, count], i) => {
        $("images").append(el("tr", {}, el("td", {}, i === 0 ? registry.registry : ""), el("td", {}, image), el("td", { class: "num" }, number(count))));
      });
    }
  }

  function chart(id, title, config) {
    const canvas = $(id);
    const names = config.data.datasets.map((d) => d.label).join(", ");
    canvas.setAttribute("aria-label", `${title}: ${names}`);
    return new Chart(canvas, config);
  }

  // ---- The table -----------------------------------------------------------
  const table = data.table;
  const S = table.strings;
  // Row fields (webhook/src/audit/report/mod.rs, `Row`).
  const [TIME, NANOS, DECISION, NAMESPACE, POLICY, PLUGIN, SHA, USER, OPERATION, KIND, NAME, REASON, ENDPOINT, UID, CODE, DRY, OBJECT] =
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16];
  const PAGE = 25;
  $("table-note").textContent = table.rows.length < table.total
    ? `The table holds the newest ${number(table.rows.length)} of ${number(table.total)} records (the charts count them all). Narrow the report with --since, --namespace or --policy, or raise --table-limit.`
    : `${plural(table.total, "record")}, newest first. Select a row to see the record.`;

  const distinct = (field) => [...new Set(table.rows.map((r) => r[field]))].map((i) => S[i]).sort();
  const fill = (select, values) => { for (const v of values) select.append(el("option", { value: v }, v)); };
  fill($("f-namespace"), distinct(NAMESPACE));
  fill($("f-policy"), distinct(POLICY));
  fill($("f-decision"), distinct(DECISION));

  // Lower-cased searchable text per row, built once.
  const haystacks = table.rows.map((r) => [NAMESPACE, POLICY, USER, KIND, NAME, REASON, UID, OPERATION].map((f) => S[r[f]]).join("\n").toLowerCase());
  let matching = table.rows.map((_, i) => i);
  let page = 0;

  function applyFilters() {
    const namespace = $("f-namespace").value, policy = $("f-policy").value, decision = $("f-decision").value;
    const words = $("f-search").value.toLowerCase().split(/\s+/).filter(Boolean);
    matching = [];
    table.rows.forEach((r, i) => {
      if (namespace && S[r[NAMESPACE]] !== namespace) return;
      if (policy && S[r[POLICY]] !== policy) return;
      if (decision && S[r[DECISION]] !== decision) return;
      if (words.some((w) => !haystacks[i].includes(w))) return;
      matching.push(i);
    });
    page = 0;
    render();
  }

  const time = (r) => new Date(r[TIME]).toISOString().replace("T", " ").replace("Z", "");
  function render() {
    const body = $("records").tBodies[0];
    body.replaceChildren();
    const pages = Math.max(1, Math.ceil(matching.length / PAGE));
    page = Math.min(page, pages - 1);
    for (const i of matching.slice(page * PAGE, (page + 1) * PAGE)) {
      const r = table.rows[i];
      const cell = (text, cls) => { const td = el("td", cls ? { class: cls } : {}, text); td.title = text; return td; };
      const row = el("tr", { tabindex: "0", "data-index": String(i) },
        cell(time(r), "time"),
        el("td", { class: "decision" }, el("span", { class: `badge ${S[r[DECISION]]}` }, S[r[DECISION]] + (r[DRY] ? " (dry run)" : ""))),
        cell(S[r[NAMESPACE]], "ns"), cell(S[r[KIND]], "kind"), cell(S[r[NAME]], "name"),
        cell(S[r[POLICY]], "policy"), cell(S[r[USER]], "user"), cell(S[r[REASON]], "reason"));
      row.addEventListener("click", () => open(i));
      row.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); open(i); } });
      body.append(row);
    }
    const first = matching.length ? page * PAGE + 1 : 0, last = Math.min(matching.length, (page + 1) * PAGE);
    const filtered = matching.length < table.rows.length ? ` (filtered from ${number(table.rows.length)})` : "";
    $("page").textContent = `${number(first)}–${number(last)} of ${number(matching.length)}${filtered} · page ${page + 1} of ${pages}`;
    $("prev").disabled = page === 0;
    $("next").disabled = page >= pages - 1;
  }

  function open(i) {
    const r = table.rows[i];
    const name = S[r[NAME]];
    $("record-title").textContent = `${S[r[DECISION]]}: ${S[r[KIND]]} ${S[r[NAMESPACE]]}/${name || "(no name)"}`;
    const nanos = String(r[NANOS]).padStart(6, "0");
    const fields = [
      ["Time", new Date(r[TIME]).toISOString().replace("Z", `${nanos}Z`)],
      ["Decision", S[r[DECISION]] + (r[CODE] ? ` (code ${r[CODE]})` : "") + (r[DRY] ? ", dry run" : "")],
      ["Policy", S[r[POLICY]]], ["Plugin", S[r[PLUGIN]]], ["Plugin sha256", S[r[SHA]]],
      ["User", S[r[USER]]], ["Operation", S[r[OPERATION]]], ["Endpoint", `/${S[r[ENDPOINT]]}`],
      ["Namespace", S[r[NAMESPACE]]], ["Kind", S[r[KIND]]], ["Name", name], ["Request uid", S[r[UID]]],
    ];
    $("record-fields").replaceChildren(...fields.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v || "—")]));
    $("record-reason").textContent = S[r[REASON]];
    $("record-object").textContent = r[OBJECT] >= 0
      ? JSON.stringify(table.objects[r[OBJECT]], null, 2)
      : "The log holds no object for this record (audit.redact.object: false), or the object was too deep to record.";
    $("record").showModal();
  }

  $("record-close").addEventListener("click", () => $("record").close());
  $("record").addEventListener("click", (e) => { if (e.target === $("record")) $("record").close(); });
  for (const id of ["f-namespace", "f-policy", "f-decision"]) $(id).addEventListener("change", applyFilters);
  $("f-search").addEventListener("input", applyFilters);
  $("controls").addEventListener("submit", (e) => e.preventDefault());
  $("prev").addEventListener("click", () => { page -= 1; render(); });
  $("next").addEventListener("click", () => { page += 1; render(); });
  render();
})();
