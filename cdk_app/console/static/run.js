"use strict";
// The run page: the graph is drawn once, then the page asks for the run every second and
// repaints what changed (job classes, timeline, history, panel, buttons): live, no reload.
const POLL_MS = 1000;
const runId = new URLSearchParams(location.search).get("id") || "";
let drawn = null; // { shape, byJob }
let selected = null;
let latest = null;

function shapeOf(phases) {
  return JSON.stringify(phases.map((phase) => [phase.name, phase.jobs.map((job) => [job.name, job.after])]));
}

function jobsByName(run) {
  const jobs = new Map();
  for (const phase of run.phases) for (const job of phase.jobs) jobs.set(job.name, { ...job, phase: phase.name });
  return jobs;
}

function pretty(value) {
  return el("pre", {}, value === null || value === undefined ? "—" : JSON.stringify(value, null, 2));
}

function renderPanel(run) {
  const panel = document.getElementById("panel");
  const job = selected && jobsByName(run).get(selected);
  if (!job) return;
  const outputs = jobsByName(run);
  const results = Object.fromEntries(job.after.map((name) => [name, outputs.get(name).output]));
  const event = { run_id: run.run_id, workflow: run.workflow, phase: job.phase, job: job.name, attempt: job.attempt, input: run.input, results };
  const attempts = run.attempts.filter((attempt) => attempt.job === job.name);
  const errorLines = (job.error || "").trim().split("\n");
  panel.replaceChildren(
    ...[
    el("h2", {}, `Job ${job.name}`),
    el("p", { class: `state state-${job.state}`, id: "panel-state" }, `${job.state} · attempt ${job.attempt} of ${job.retries + 1} allowed`),
    job.when ? el("p", {}, `when ${job.when}`) : null,
    job.for_each ? el("p", { id: "panel-items" }, `for_each ${job.for_each}: ${job.items || "not started"}`) : null,
    job.failed_items && job.failed_items.length ? el("h3", {}, "Failed items") : null,
    job.failed_items && job.failed_items.length ? el("ol", { id: "panel-failed-items" }, ...job.failed_items.map((failed) => el("li", { class: "state-failed" },
      `item ${failed.index} ${JSON.stringify(failed.item)}`, el("pre", { class: "error" }, firstLine(failed.error || "", 200))))) : null,
    job.kind !== "code" ? el("p", { id: "panel-kind" }, jobKindText(job)) : null,
    run.callback_tokens && run.callback_tokens[job.name] ? el("p", { id: "panel-callback-token" }, "callback token: ", el("code", {}, run.callback_tokens[job.name])) : null,
    job.child ? el("p", { id: "panel-child" }, `runs workflow ${job.child.workflow} as child run `, el("a", { href: `/run?id=${encodeURIComponent(job.child.run_id)}` }, job.child.run_id)) : null,
    job.waits ? el("p", { id: "panel-waits", class: "state-waiting" }, `waits: ${job.waits}`) : null,
    job.state === "waiting" && job.due_at ? el("p", { id: "panel-due" }, `waiting until ${when(job.due_at)}${job.kind === "approval" || job.kind === "event" ? " (then it times out)" : ""}`) : null,
    el("h3", {}, "Event"), pretty(event),
    el("h3", {}, "Output"), pretty(job.output),
    el("h3", {}, "Error"),
    job.error ? el("pre", { class: "error" }, errorLines[0]) : pretty(null),
    errorLines.length > 1 ? el("details", {}, el("summary", {}, "traceback"), el("pre", { class: "error" }, errorLines.slice(1).join("\n"))) : null,
    el("h3", {}, "Attempts"),
    el("ol", {}, ...attempts.map((attempt) => el("li", { class: `state-${attempt.status}` },
      `#${attempt.attempt} ${statusText(attempt)}, started ${when(attempt.started) || "—"}, ended ${when(attempt.ended) || "—"}`,
      attempt.error ? el("pre", { class: "error" }, firstLine(attempt.error, 200)) : null))),
    ].filter((child) => child !== null),
  );
}

// What a job without code does, in the panel: an event job names its event and its match.
function jobKindText(job) {
  if (job.kind === "wait") return "a wait job: no code runs";
  if (job.kind === "event") return `an event job: waits for ${job.event.name}${job.event.match ? ` where ${job.event.match}` : ""}`;
  if (job.kind === "approval") return `an approval job${job.message ? `: ${job.message}` : ""}`;
  if (job.kind === "callback") return "a callback job: waits for its token's completion (complete TOKEN)";
  return `a ${job.kind} job`;
}

const ROW = 18, LABEL = 200, SPAN = 640;

// How an attempt reads on the timeline: a job's code ran; a wait or an approval waited (no
// code runs); a fan-out's items ran, from its dispatch to its end.
const KIND_NOTE = { wait: "wait", approval: "approval", event: "event", fan_out: "fan-out" };

// A wait's timer ends its wait; an approval's ends it unanswered.
function statusText(attempt) {
  if (attempt.status !== "timer_fired") return attempt.status;
  return attempt.kind === "approval" || attempt.kind === "event" ? "timed out" : "waited";
}

function duration(milliseconds) {
  return milliseconds < 1000 ? `${Math.round(milliseconds)} ms` : `${(milliseconds / 1000).toFixed(2)} s`;
}

function renderTimeline(run) {
  const box = document.getElementById("timeline");
  const attempts = run.attempts.filter((attempt) => attempt.started || attempt.ended);
  if (!attempts.length) {
    box.replaceChildren(el("p", { class: "hint" }, "No attempt has started yet."));
    return;
  }
  const now = Date.now();
  const start = Math.min(...attempts.map((a) => Date.parse(a.started || a.ended)));
  const ends = attempts.map((a) => Date.parse(a.ended || a.started));
  if (!run.ended) ends.push(now);
  const end = Math.max(...ends);
  const scale = SPAN / Math.max(1, end - start);
  const chart = svg("svg", { class: "timeline-chart", width: LABEL + SPAN + 240, height: attempts.length * ROW + 24 });
  attempts.forEach((attempt, row) => {
    const known = Boolean(attempt.started); // an attempt of an older round may have only its end
    const from = Date.parse(attempt.started || attempt.ended);
    const to = attempt.ended ? Date.parse(attempt.ended) : run.ended ? from : now;
    const y = row * ROW + 4;
    const note = KIND_NOTE[attempt.kind];
    const took = known ? duration(to - from) : "start unknown";
    const detail = [took, attempt.items].filter(Boolean).join(" · ");
    const state = attempt.ended || attempt.status === "waiting" ? attempt.status : "started";
    const bar = `bar kind-${attempt.kind} state-${state}${known ? "" : " unknown-start"}`;
    chart.append(
      svg("text", { x: 0, y: y + 12, class: "label" }, `${attempt.job} #${attempt.attempt}`,
        ...(note ? [svg("tspan", { class: "kind", dx: 4 }, ` ${note}`)] : [])),
      svg("rect", { x: LABEL + (from - start) * scale, y, width: Math.max(2, (to - from) * scale), height: ROW - 6, class: bar, "data-job": attempt.job, "data-kind": attempt.kind },
        svg("title", {}, `${attempt.job} attempt ${attempt.attempt}${note ? ` (${note})` : ""}: ${statusText(attempt)}, ${detail}`)),
      svg("text", { x: LABEL + (to - start) * scale + 4, y: y + 12, class: "duration", "data-job": attempt.job }, detail),
    );
  });
  box.replaceChildren(chart);
}

function renderHistory(run) {
  const body = document.querySelector("#history tbody");
  body.replaceChildren(...run.history.map((entry) => el("tr", { class: `state-${entry.status}` },
    el("td", {}, when(entry.date)), el("td", {}, entry.status), el("td", {}, entry.phase || ""),
    el("td", {}, entry.job || ""), el("td", {}, String(entry.attempt)),
    el("td", { class: "error" }, firstLine(entry.error || entry.reason, 120)))));
}

async function post(path, body) {
  try {
    const response = await fetch(path, {
      method: "POST",
      headers: { "X-Console-Action": "1", "Content-Type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const answer = await response.json();
    showProblem(response.ok ? "" : answer.error);
    return response.ok;
  } catch (error) {
    showProblem(error.message);
    return false;
  } finally {
    refresh();
  }
}

async function act(action) {
  if (await post(`/api/run/${action}?id=${encodeURIComponent(runId)}`)) {
    document.getElementById("actions").dataset.requested = action;
  }
}

function answer(job, approve) {
  // The one text box holds the output (JSON) of an approval, or the reason of a rejection.
  const text = document.getElementById(`answer-${job}`).value.trim();
  let body = {};
  if (approve && text) {
    try {
      body = { output: JSON.parse(text) };
    } catch (error) {
      showProblem(`the output of ${job} is not JSON: ${error.message}`);
      return;
    }
  } else if (!approve && text) {
    body = { reason: text };
  }
  const verb = approve ? "approve" : "reject";
  post(`/api/run/${verb}?id=${encodeURIComponent(runId)}&job=${encodeURIComponent(job)}`, body);
}

function approvalBox(run, job) {
  const message = jobsByName(run).get(job).message;
  const approve = el("button", { type: "button", id: `action-approve-${job}`, class: "action approve" }, `approve ${job}`);
  const reject = el("button", { type: "button", id: `action-reject-${job}`, class: "action reject" }, `reject ${job}`);
  approve.addEventListener("click", () => answer(job, true));
  reject.addEventListener("click", () => answer(job, false));
  return el("span", { class: "approval", "data-job": job },
    el("span", { class: "asks" }, `${job} waits for an answer${message ? `: ${message}` : ""}`),
    el("input", { type: "text", id: `answer-${job}`, placeholder: "output JSON, or the reason to reject", "aria-label": `answer to ${job}` }),
    approve, reject);
}

function sendEvent(job) {
  const text = document.getElementById(`event-${job}`).value.trim();
  let payload = null;
  try {
    payload = text ? JSON.parse(text) : null;
  } catch (error) {
    showProblem(`the payload for ${job} is not JSON: ${error.message}`);
    return;
  }
  post(`/api/run/event?id=${encodeURIComponent(runId)}&job=${encodeURIComponent(job)}`, { payload });
}

function eventBox(run, job) {
  const waited = jobsByName(run).get(job).event;
  const send = el("button", { type: "button", id: `action-event-${job}`, class: "action event" }, `send ${waited.name}`);
  send.addEventListener("click", () => sendEvent(job));
  return el("span", { class: "approval", "data-job": job },
    el("span", { class: "asks" }, `${job} waits for ${waited.name}${waited.match ? ` where ${waited.match}` : ""}`),
    el("input", { type: "text", id: `event-${job}`, placeholder: "payload JSON", "aria-label": `payload for ${job}` }),
    send);
}

// A waiting callback job: complete it with an output, or fail its attempt with an error.
function completeCallback(job, failing) {
  const text = document.getElementById(`callback-${job}`).value.trim();
  let body = { error: text || "failed from the console" };
  if (!failing) {
    try {
      body = { output: text ? JSON.parse(text) : null };
    } catch (error) {
      showProblem(`the output for ${job} is not JSON: ${error.message}`);
      return;
    }
  }
  post(`/api/run/complete?id=${encodeURIComponent(runId)}&job=${encodeURIComponent(job)}`, body);
}

function callbackBox(run, job) {
  const complete = el("button", { type: "button", id: `action-complete-${job}`, class: "action approve" }, "complete");
  const fail = el("button", { type: "button", id: `action-fail-${job}`, class: "action reject" }, "fail");
  complete.addEventListener("click", () => completeCallback(job, false));
  fail.addEventListener("click", () => completeCallback(job, true));
  return el("span", { class: "approval", "data-job": job },
    el("span", { class: "asks" }, `${job} waits for its callback`),
    el("input", { type: "text", id: `callback-${job}`, placeholder: "output JSON, or the error to fail with", "aria-label": `completion of ${job}` }),
    complete, fail);
}

function renderActions(run) {
  const box = document.getElementById("actions");
  const wanted = `${run.actions.join(",")}|${run.approvals.join(",")}|${run.events.join(",")}|${run.callbacks.join(",")}`;
  if (box.dataset.shown === wanted) return;
  box.dataset.shown = wanted;
  box.replaceChildren(
    ...run.actions.map((action) => {
      const button = el("button", { type: "button", id: `action-${action}`, class: `action ${action}` }, action);
      button.addEventListener("click", () => act(action));
      return button;
    }),
    ...run.approvals.map((job) => approvalBox(run, job)),
    ...run.events.map((job) => eventBox(run, job)),
    ...run.callbacks.map((job) => callbackBox(run, job)),
  );
}

function render(run) {
  latest = run;
  document.title = `${run.workflow} ${run.run_id} · workflow console`;
  document.getElementById("title").textContent = `${run.workflow} run ${run.run_id}`;
  const summary = document.getElementById("summary");
  summary.className = `summary state-${run.status}`;
  summary.textContent = `${run.status} · phase ${run.phase}${run.redrives ? ` · redriven ${run.redrives}×` : ""}${run.deploy_id ? ` · deploy ${run.deploy_id}` : ""}${run.error ? ` · ${firstLine(run.error, 160)}` : ""}`;
  if (run.parent) {
    summary.append(" · child of ", el("a", { href: `/run?id=${encodeURIComponent(run.parent.run_id)}`, id: "parent-run" }, run.parent.run_id), ` (job ${run.parent.job})`);
  }
  const shape = shapeOf(run.phases);
  const first = !drawn || drawn.shape !== shape;
  if (first) drawn = { shape, byJob: drawRun(document.getElementById("graph"), run.phases, select) };
  paintRun(drawn.byJob, run.phases, selected);
  if (first) {
    // What the render benchmark reads: the graph laid out, drawn, then on screen (the frame after).
    performance.mark("graph-drawn");
    requestAnimationFrame(() => setTimeout(() => performance.mark("graph-painted")));
  }
  renderActions(run);
  renderPanel(run);
  renderTimeline(run);
  renderHistory(run);
  document.body.dataset.version = String(run.version);
}

function select(name) {
  selected = name;
  if (latest) render(latest);
}

async function refresh() {
  try {
    const run = await getJson(`/api/run?id=${encodeURIComponent(runId)}`);
    if (!drawn) performance.mark("run-fetched");
    render(run);
    showProblem("");
  } catch (error) {
    showProblem(error.message);
  }
}

async function poll() {
  await refresh();
  setTimeout(poll, POLL_MS);
}
poll();
