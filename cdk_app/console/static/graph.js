"use strict";
// The run's graph: dagre (the pinned npm package) lays it out, this file draws plain SVG.
// Phases are clusters. Between two phases an invisible gate node joins the last jobs of one to
// the first of the next, so dagre ranks the phases left to right (a wide phase costs as many
// edges as it has jobs, not their square); what is drawn is one arrow from the border of a
// phase's cluster to the border of the next's, as `graph --format dot` draws it. The failure
// handlers are laid out apart and drawn under the phases, joined to none.
// Every cluster's box is drawn around its jobs with a band on top for its name, so no job
// covers the name. Drawn once per run; while the run advances only each node's class changes.
const NODE_HEIGHT = 30;
const CHAR_WIDTH = 7.2;
const PADDING = 12;
const GATE = 6;
const CLUSTER_PAD = 10; // around a cluster's jobs
const LABEL_BAND = 20; // above them: the phase's name
const MARGIN = 12;
const HANDLERS_GAP = 24;
const FAN_OUT_HEIGHT = 46;
const HANDLERS_TITLE = "on_failure: when the run fails or is cancelled";

function jobWidth(job) {
  // A fan-out is one node however many items it has: its name, then its expression and counts.
  const lines = job.for_each ? [job.name, `for_each ${job.for_each}`, job.items || "not started"] : [job.name];
  return Math.max(60, Math.round(Math.max(...lines.map((line) => line.length)) * CHAR_WIDTH + 2 * PADDING));
}

function clusterTitle(phase) {
  return phase.title || (phase.handlers ? HANDLERS_TITLE : phase.name);
}

function newGraph() {
  const graph = new dagre.graphlib.Graph({ compound: true, multigraph: false });
  graph.setGraph({ rankdir: "LR", nodesep: 10, ranksep: 36, marginx: 0, marginy: 0 });
  graph.setDefaultEdgeLabel(() => ({}));
  return graph;
}

// Lays `phases` out with dagre; returns jobs (name -> box), edges (between jobs, with the
// points dagre routed: each ends on its target's border) and gates (phase -> point).
function layoutPart(phases, known) {
  const graph = newGraph();
  for (const phase of phases) {
    graph.setNode(`phase:${phase.name}`, {});
    for (const job of phase.jobs) {
      graph.setNode(`job:${job.name}`, { width: jobWidth(job), height: job.for_each ? FAN_OUT_HEIGHT : NODE_HEIGHT });
      graph.setParent(`job:${job.name}`, `phase:${phase.name}`);
    }
  }
  const drawn = [];
  for (const phase of phases) {
    for (const job of phase.jobs) {
      for (const before of job.after) {
        if (!known.has(before)) continue;
        graph.setEdge(`job:${before}`, `job:${job.name}`);
        drawn.push([before, job.name]);
      }
    }
  }
  phases.forEach((phase, position) => {
    const next = phases[position + 1];
    if (!next || phase.handlers) return;
    const gate = `gate:${phase.name}`;
    graph.setNode(gate, { width: GATE, height: GATE });
    // The last jobs of a phase are those no job of the phase needs; the first of the next, those
    // that need no job of their own phase (an `after` across phases does not make a job later).
    const here = new Set(phase.jobs.map((job) => job.name)), there = new Set(next.jobs.map((job) => job.name));
    const needed = new Set(phase.jobs.flatMap((job) => job.after.filter((name) => here.has(name))));
    for (const job of phase.jobs) if (!needed.has(job.name)) graph.setEdge(`job:${job.name}`, gate);
    for (const job of next.jobs) if (!job.after.some((name) => there.has(name))) graph.setEdge(gate, `job:${job.name}`);
  });
  dagre.layout(graph);
  const jobs = new Map();
  for (const phase of phases) {
    for (const job of phase.jobs) {
      const node = graph.node(`job:${job.name}`);
      jobs.set(job.name, { x: node.x - node.width / 2, y: node.y - node.height / 2, width: node.width, height: node.height });
    }
  }
  const edges = drawn.map(([from, to]) => ({ from, to, points: graph.edge(`job:${from}`, `job:${to}`).points.map((p) => ({ x: p.x, y: p.y })) }));
  const gates = new Map();
  for (const phase of phases) if (graph.hasNode(`gate:${phase.name}`)) gates.set(phase.name, { ...graph.node(`gate:${phase.name}`) });
  return { jobs, edges, gates };
}

function clusterBox(phase, jobs) {
  const boxes = phase.jobs.map((job) => jobs.get(job.name));
  const left = Math.min(...boxes.map((box) => box.x)) - CLUSTER_PAD;
  const right = Math.max(...boxes.map((box) => box.x + box.width)) + CLUSTER_PAD;
  const top = Math.min(...boxes.map((box) => box.y)) - CLUSTER_PAD - LABEL_BAND;
  const bottom = Math.max(...boxes.map((box) => box.y + box.height)) + CLUSTER_PAD;
  const title = clusterTitle(phase);
  return { x: left, y: top, width: Math.max(right - left, title.length * CHAR_WIDTH + 16), height: bottom - top, title };
}

// Moves everything of `part` right of `from` by `by` (the phases are side by side: widening one
// for its name pushes the next ones along).
function shiftRight(part, from, by) {
  for (const box of part.jobs.values()) if (box.x >= from) box.x += by;
  for (const edge of part.edges) for (const point of edge.points) if (point.x >= from) point.x += by;
  for (const gate of part.gates.values()) if (gate.x >= from) gate.x += by;
}

function translate(part, dx, dy) {
  for (const box of part.jobs.values()) { box.x += dx; box.y += dy; }
  for (const edge of part.edges) for (const point of edge.points) { point.x += dx; point.y += dy; }
  for (const gate of part.gates.values()) { gate.x += dx; gate.y += dy; }
  for (const box of part.clusters.values()) { box.x += dx; box.y += dy; }
}

// Places the clusters of one part (left to right) and moves the part so its top-left is `origin`.
function placeClusters(part, phases, origin) {
  part.clusters = new Map();
  const ordered = phases.filter((phase) => phase.jobs.length)
    .map((phase) => ({ phase, box: clusterBox(phase, part.jobs) }))
    .sort((a, b) => a.box.x - b.box.x);
  for (const { phase } of ordered) {
    const box = clusterBox(phase, part.jobs);
    const drawnRight = Math.max(...phase.jobs.map((job) => part.jobs.get(job.name).x + part.jobs.get(job.name).width)) + CLUSTER_PAD;
    const wider = box.x + box.width - drawnRight;
    if (wider > 0) shiftRight(part, drawnRight, wider);
    part.clusters.set(phase.name, box);
  }
  const boxes = [...part.clusters.values()];
  const left = Math.min(...boxes.map((box) => box.x)), top = Math.min(...boxes.map((box) => box.y));
  translate(part, origin.x - left, origin.y - top);
  part.right = Math.max(...boxes.map((box) => box.x + box.width));
  part.bottom = Math.max(...boxes.map((box) => box.y + box.height));
}

// The arrow from one phase's cluster to the next's: leaves the first at its right border and
// ends on the second's left border, at the gate's height where both clusters reach it.
function phaseLink(from, to, gate) {
  const clamp = (box) => Math.min(Math.max(gate.y, box.y + LABEL_BAND + CLUSTER_PAD), box.y + box.height - CLUSTER_PAD);
  const start = { x: from.x + from.width, y: clamp(from) }, end = { x: to.x, y: clamp(to) };
  if (Math.abs(start.y - end.y) < 0.5) return [start, { x: end.x, y: start.y }];
  const middle = (start.x + end.x) / 2;
  return [start, { x: middle, y: start.y }, { x: middle, y: end.y }, end];
}

function layoutRun(phases) {
  const known = new Set(phases.flatMap((phase) => phase.jobs.map((job) => job.name)));
  const running = phases.filter((phase) => !phase.handlers);
  const handlers = phases.filter((phase) => phase.handlers);
  const main = layoutPart(running, known);
  placeClusters(main, running, { x: MARGIN, y: MARGIN });
  const parts = [main];
  let bottom = main.bottom, right = main.right;
  if (handlers.some((phase) => phase.jobs.length)) {
    const apart = layoutPart(handlers, known);
    placeClusters(apart, handlers, { x: MARGIN, y: main.bottom + HANDLERS_GAP });
    parts.push(apart);
    bottom = apart.bottom;
    right = Math.max(right, apart.right);
  }
  const links = [];
  running.forEach((phase, position) => {
    const next = running[position + 1];
    if (!next || !main.clusters.has(phase.name) || !main.clusters.has(next.name)) return;
    links.push({ from: phase.name, to: next.name, points: phaseLink(main.clusters.get(phase.name), main.clusters.get(next.name), main.gates.get(phase.name)) });
  });
  performance.mark("graph-laid-out");
  return {
    width: right + MARGIN,
    height: bottom + MARGIN,
    jobs: new Map(parts.flatMap((part) => [...part.jobs])),
    clusters: new Map(parts.flatMap((part) => [...part.clusters])),
    edges: parts.flatMap((part) => part.edges),
    links,
  };
}

function edgePath(points) {
  return points.map((point, index) => `${index ? "L" : "M"}${point.x.toFixed(1)},${point.y.toFixed(1)}`).join(" ");
}

function arrowhead() {
  // The tip is the path's last point: the border of the box it ends at.
  return svg("defs", {},
    svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse", markerUnits: "userSpaceOnUse" },
      svg("path", { d: "M0,0 L10,5 L0,10 z", class: "arrowhead" })));
}

// What a job's tooltip says: its state, and what its marks mean.
function jobTitle(job) {
  const lines = [`${job.name}: ${job.state || "unknown"}`];
  if (job.state === "skipped") lines.push(job.when ? `skipped: its condition was false (when ${job.when})` : "skipped: a job it needs did not succeed");
  else if (job.state === "upstream_failed") lines.push(`upstream_failed: a job it waits for failed, and its ${job.depends ? "depends" : `join (${job.join || "all"})`} does not run after that`);
  else if (job.when) lines.push(`conditional: runs only when ${job.when}`);
  if (job.depends) lines.push(`depends ${job.depends}`);
  else if (job.join && job.join !== "all") lines.push(`join ${job.join}`);
  if (job.allow_failure) lines.push("allow_failure: if it fails, the run goes on");
  if (job.fails_run) lines.push("fails_run: if it fails, a run that was going to succeed ends failed");
  if (job.calls) lines.push(`runs no code of its own: ${job.calls}`);
  return lines.join("\n");
}

function badge(box, right, text, kind) {
  const width = text.length * 6 + 8;
  const x = box.x + box.width - right - width;
  return svg("g", { class: `badge ${kind}` },
    svg("rect", { x, y: box.y - 7, width, height: 13, rx: 6 }),
    svg("text", { x: x + width / 2, y: box.y + 3, "text-anchor": "middle" }, text));
}

// Draws the run into `container`; returns job name -> its SVG group, for updates and clicks.
function drawRun(container, phases, onSelect) {
  const layout = layoutRun(phases);
  const width = Math.ceil(layout.width), height = Math.ceil(layout.height);
  const root = svg("svg", { class: "run-graph", width, height, viewBox: `0 0 ${width} ${height}` });
  const clusters = svg("g", { class: "clusters" });
  const edges = svg("g", { class: "edges" });
  const nodes = svg("g", { class: "nodes" });
  for (const phase of phases) {
    const box = layout.clusters.get(phase.name);
    if (!box) continue;
    clusters.append(
      svg("g", { class: phase.handlers ? "phase handlers" : "phase", "data-phase": phase.name },
        svg("rect", { x: box.x, y: box.y, width: box.width, height: box.height, rx: 6 }),
        svg("text", { class: "phase-label", x: box.x + 8, y: box.y + 15 }, box.title)),
    );
  }
  for (const edge of layout.edges) {
    edges.append(svg("path", { class: "edge", "data-from": edge.from, "data-to": edge.to, d: edgePath(edge.points), "marker-end": "url(#arrow)" }));
  }
  for (const link of layout.links) {
    edges.append(svg("path", { class: "phase-link", "data-from": link.from, "data-to": link.to, d: edgePath(link.points), "marker-end": "url(#arrow)" }));
  }
  const byJob = new Map();
  for (const phase of phases) {
    for (const job of phase.jobs) {
      const box = layout.jobs.get(job.name);
      const group = svg("g", { class: "job", "data-job": job.name, tabindex: "0", role: "button" },
        svg("title", {}, jobTitle(job)),
        svg("rect", { class: "box", x: box.x, y: box.y, width: box.width, height: box.height, rx: 4 }));
      if (job.for_each) {
        const middle = box.x + box.width / 2;
        group.append(
          svg("rect", { class: "fan-out-border", x: box.x + 3, y: box.y + 3, width: box.width - 6, height: box.height - 6, rx: 3 }),
          svg("text", { class: "name", x: middle, y: box.y + 14, "text-anchor": "middle" }, job.name),
          svg("text", { class: "expression", x: middle, y: box.y + 27, "text-anchor": "middle" }, `for_each ${job.for_each}`),
          svg("text", { class: "items", x: middle, y: box.y + 40, "text-anchor": "middle" }, job.items || "not started"));
      } else {
        group.append(svg("text", { class: "name", x: box.x + box.width / 2, y: box.y + box.height / 2 + 4, "text-anchor": "middle" }, job.name));
      }
      // The marks of a conditional job and of one that may fail: a badge each on the top border.
      let right = 4;
      if (job.allow_failure) {
        const mark = badge(box, right, "may fail", "tolerated-badge");
        group.append(mark);
        right += Number(mark.firstChild.getAttribute("width")) + 3;
      }
      if (job.when) {
        const mark = badge(box, right, "when", "conditional-badge");
        group.append(mark);
        right += Number(mark.firstChild.getAttribute("width")) + 3;
      }
      // A job that calls what a team already has: what it is (invoke, call, http) on its border.
      if (job.calls) group.append(badge(box, right, job.kind, "calls-badge"));
      group.addEventListener("click", () => onSelect(job.name));
      group.addEventListener("keydown", (event) => { if (event.key === "Enter") onSelect(job.name); });
      nodes.append(group);
      byJob.set(job.name, group);
    }
  }
  root.append(arrowhead(), clusters, edges, nodes);
  container.replaceChildren(root);
  return byJob;
}

function paintRun(byJob, phases, selected) {
  for (const phase of phases) {
    for (const job of phase.jobs) {
      const group = byJob.get(job.name);
      const marks = `${job.for_each ? " fan-out" : ""}${job.when ? " conditional" : ""}${job.allow_failure ? " tolerated" : ""}`;
      const classes = `job state-${job.state || "unknown"}${marks}${job.name === selected ? " selected" : ""}`;
      if (group.getAttribute("class") !== classes) group.setAttribute("class", classes);
      const title = group.querySelector("title");
      if (title.textContent !== jobTitle(job)) title.textContent = jobTitle(job);
      const counts = job.for_each && group.querySelector("text.items");
      if (counts && counts.textContent !== (job.items || "not started")) counts.textContent = job.items || "not started";
    }
  }
}
