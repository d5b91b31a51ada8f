"use strict";
// The runs page: the filters live in the address (so a filtered view can be shared), pages are
// keyset cursors from the API, and the first page refreshes itself while it is open.
const FILTERS = ["workflow", "status", "since", "until", "q"];
const REFRESH_MS = 3000;

function apiQuery(params) {
  const query = new URLSearchParams();
  for (const name of FILTERS) {
    let value = params.get(name);
    if (!value) continue;
    // datetime-local has no zone: the browser's own is what the user meant.
    if (name === "since" || name === "until") value = new Date(value).toISOString();
    query.set(name, value);
  }
  return query;
}

function renderCounts(counts, params) {
  const box = document.getElementById("counts");
  box.replaceChildren();
  for (const [state, count] of Object.entries(counts)) {
    const query = new URLSearchParams(params);
    query.set("status", state);
    query.delete("page");
    box.append(el("a", { class: `count state-${state}`, href: `/?${query}`, "data-state": state }, `${state} ${count}`), " ");
  }
}

function renderRuns(runs) {
  const body = document.querySelector("#runs tbody");
  body.replaceChildren(
    ...runs.map((run) =>
      el(
        "tr",
        { "data-run": run.run_id, class: `state-${run.status}` },
        el("td", {}, el("a", { href: `/run?id=${encodeURIComponent(run.run_id)}` }, run.run_id)),
        el("td", {}, el("a", { class: "workflow", href: `/workflow?name=${encodeURIComponent(run.workflow)}` }, run.workflow)),
        el("td", { class: "status" }, run.status),
        el("td", {}, run.phase),
        el("td", { class: "deploy" }, run.deploy_id || ""),
        el("td", {}, when(run.created_at)),
        el("td", {}, when(run.updated_at)),
        el("td", { class: "error" }, firstLine(run.error, 80)),
      ),
    ),
  );
  if (!runs.length) body.append(el("tr", {}, el("td", { colspan: "8", class: "hint" }, "No runs match.")));
}

async function load() {
  const params = new URLSearchParams(location.search);
  const query = apiQuery(params);
  const form = document.getElementById("filters");
  for (const name of FILTERS) form.elements[name].value = params.get(name) || "";
  const page = params.get("page");
  const listing = new URLSearchParams(query);
  if (page) listing.set("page", page);
  try {
    const [found, counted] = await Promise.all([getJson(`/api/runs?${listing}`), getJson(`/api/counts?${query}`)]);
    showProblem("");
    renderRuns(found.runs);
    renderCounts(counted.counts, params);
    const older = document.getElementById("older");
    older.disabled = !found.next_page;
    older.onclick = () => {
      params.set("page", found.next_page);
      location.search = params.toString();
    };
    document.getElementById("newest").disabled = !page;
  } catch (error) {
    showProblem(error.message);
  }
  if (!page) setTimeout(load, REFRESH_MS);
}

document.getElementById("filters").addEventListener("submit", (event) => {
  event.preventDefault();
  const params = new URLSearchParams();
  for (const [name, value] of new FormData(event.target)) if (value) params.set(name, value);
  location.search = params.toString();
});
document.getElementById("newest").addEventListener("click", () => {
  const params = new URLSearchParams(location.search);
  params.delete("page");
  location.search = params.toString();
});
load();
