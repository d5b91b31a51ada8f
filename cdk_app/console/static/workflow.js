"use strict";
// The workflow page: three charts drawn as SVG from /api/workflow (cdk_app/console/stats.py):
// runs per hour by outcome (stacked bars), run duration percentiles and the slowest jobs
// (horizontal bars). No chart library: a few rectangles and labels.
const OUTCOMES = ["succeeded", "failed", "cancelled", "running"];
const REFRESH_MS = 5000;
const WIDTH = 560;

function seconds(value) {
  return value === null || value === undefined ? "–" : value < 10 ? value.toFixed(2) : value.toFixed(0);
}

function drawPerHour(perHour) {
  const chart = document.getElementById("per-hour");
  const height = 160;
  const top = Math.max(1, ...perHour.map((hour) => OUTCOMES.reduce((sum, state) => sum + hour[state], 0)));
  const step = WIDTH / Math.max(1, perHour.length);
  const bars = [];
  perHour.forEach((hour, index) => {
    let base = height - 20;
    for (const state of OUTCOMES) {
      if (!hour[state]) continue;
      const size = (hour[state] / top) * (height - 30);
      base -= size;
      bars.push(
        svg(
          "rect",
          { class: `bar state-${state}`, x: index * step + 1, y: base, width: Math.max(1, step - 2), height: size, "data-hour": hour.hour, "data-state": state, "data-count": hour[state] },
          svg("title", {}, `${hour.hour.slice(11, 16)} UTC: ${hour[state]} ${state}`),
        ),
      );
    }
  });
  const last = perHour.length ? perHour[perHour.length - 1].hour.slice(11, 16) : "";
  chart.setAttribute("viewBox", `0 0 ${WIDTH} ${height}`);
  chart.replaceChildren(
    ...bars,
    svg("text", { x: 0, y: height - 4, class: "axis" }, `max ${top} per hour`),
    svg("text", { x: WIDTH, y: height - 4, class: "axis", "text-anchor": "end" }, `${last} UTC`),
  );
}

function drawBars(id, rows) {
  // rows: [{label, value, text, attributes}] as horizontal bars scaled to the largest.
  const chart = document.getElementById(id);
  const rowHeight = 22;
  const top = Math.max(1e-9, ...rows.map((row) => row.value || 0));
  const height = Math.max(rowHeight, rows.length * rowHeight);
  chart.setAttribute("viewBox", `0 0 ${WIDTH} ${height}`);
  if (!rows.length) {
    chart.replaceChildren(svg("text", { x: 0, y: 15, class: "axis" }, "No ended runs yet."));
    return;
  }
  chart.replaceChildren(
    ...rows.flatMap((row, index) => [
      svg("text", { x: 0, y: index * rowHeight + 15, class: "label" }, row.label),
      svg("rect", { class: "bar value", x: 160, y: index * rowHeight + 4, height: rowHeight - 8, width: ((row.value || 0) / top) * (WIDTH - 240), ...row.attributes }),
      svg("text", { x: WIDTH, y: index * rowHeight + 15, class: "value", "text-anchor": "end" }, row.text),
    ]),
  );
}

async function load() {
  const params = new URLSearchParams(location.search);
  const name = params.get("name") || "";
  document.getElementById("title").textContent = `Workflow ${name}`;
  document.title = `${name} · workflow console`;
  try {
    const query = new URLSearchParams({ name });
    if (params.get("hours")) query.set("hours", params.get("hours"));
    const stats = await getJson(`/api/workflow?${query}`);
    showProblem("");
    document.getElementById("hours").textContent = stats.hours;
    drawPerHour(stats.per_hour);
    const durations = stats.duration_seconds;
    drawBars(
      "durations",
      durations.runs
        ? ["p50", "p90", "p99"].map((rank) => ({ label: rank, value: durations[rank], text: seconds(durations[rank]), attributes: { "data-percentile": rank } }))
        : [],
    );
    drawBars(
      "slowest",
      stats.slowest_jobs.map((job) => ({ label: job.job, value: job.p90_seconds, text: `${seconds(job.p90_seconds)} (max ${seconds(job.max_seconds)})`, attributes: { "data-job": job.job } })),
    );
  } catch (error) {
    showProblem(error.message);
  }
  setTimeout(load, REFRESH_MS);
}

load();
