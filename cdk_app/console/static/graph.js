"use strict";
// The run's graph: dagre (the pinned npm package) lays it out, this file draws plain SVG.
// Phases are dagre clusters; between two phases one small gate node joins the last jobs of one
// to the first of the next, so a wide phase costs as many edges as it has jobs, not their square.
// Drawn once per run; while the run advances only each node's class changes.
const NODE_HEIGHT = 30;
const CHAR_WIDTH = 7.2;
const PADDING = 12;
const GATE = 6;

const FAN_OUT_HEIGHT = 46;

function jobWidth(job) {
  // A fan-out is one node however many items it has: its name, then its expression and counts.
  const lines = job.for_each ? [job.name, `for_each ${job.for_each}`, job.items || "not started"] : [job.name];
  return Math.max(60, Math.round(Math.max(...lines.map((line) => line.length)) * CHAR_WIDTH + 2 * PADDING));
}

function layoutRun(phases) {
  const graph = new dagre.graphlib.Graph({ compound: true, multigraph: false });
  graph.setGraph({ rankdir: "LR", nodesep: 10, ranksep: 36, marginx: 12, marginy: 12 });
  graph.setDefaultEdgeLabel(() => ({}));
  for (const phase of phases) {
    const cluster = `phase:${phase.name}`;
    graph.setNode(cluster, { label: phase.name, paddingTop: 24 });
    for (const job of phase.jobs) {
      graph.setNode(`job:${job.name}`, { width: jobWidth(job), height: job.for_each ? FAN_OUT_HEIGHT : NODE_HEIGHT });
      graph.setParent(`job:${job.name}`, cluster);
    }
  }
  const known = new Set(phases.flatMap((phase) => phase.jobs.map((job) => job.name)));
  for (const phase of phases) {
    for (const job of phase.jobs) {
      for (const before of job.after) if (known.has(before)) graph.setEdge(`job:${before}`, `job:${job.name}`);
    }
  }
  // The failure handlers' cluster (last, when there is one) is joined to no phase.
  const running = phases.filter((phase) => !phase.handlers);
  running.forEach((phase, position) => {
    const next = running[position + 1];
    if (!next) return;
    const gate = `gate:${phase.name}`;
    graph.setNode(gate, { width: GATE, height: GATE });
    const needed = new Set(phase.jobs.flatMap((job) => job.after));
    for (const job of phase.jobs) if (!needed.has(job.name)) graph.setEdge(`job:${job.name}`, gate);
    for (const job of next.jobs) if (!job.after.length) graph.setEdge(gate, `job:${job.name}`);
  });
  dagre.layout(graph);
  performance.mark("graph-laid-out");
  return graph;
}

function edgePath(points) {
  return points.map((point, index) => `${index ? "L" : "M"}${point.x.toFixed(1)},${point.y.toFixed(1)}`).join(" ");
}

// Draws the run into `container`; returns job name -> its SVG group, for updates and clicks.
function drawRun(container, phases, onSelect) {
  const graph = layoutRun(phases);
  const size = graph.graph();
  const root = svg("svg", {
    class: "run-graph",
    width: Math.ceil(size.width),
    height: Math.ceil(size.height),
    viewBox: `0 0 ${Math.ceil(size.width)} ${Math.ceil(size.height)}`,
  });
  const clusters = svg("g", { class: "clusters" });
  const edges = svg("g", { class: "edges" });
  const nodes = svg("g", { class: "nodes" });
  for (const phase of phases) {
    const box = graph.node(`phase:${phase.name}`);
    const x = box.x - box.width / 2, y = box.y - box.height / 2;
    clusters.append(
      svg("g", { class: phase.handlers ? "phase handlers" : "phase", "data-phase": phase.name },
        svg("rect", { x, y, width: box.width, height: box.height, rx: 6 }),
        svg("text", { x: x + 8, y: y + 16 }, phase.name)),
    );
  }
  for (const edge of graph.edges()) edges.append(svg("path", { d: edgePath(graph.edge(edge).points) }));
  const byJob = new Map();
  for (const phase of phases) {
    for (const job of phase.jobs) {
      const box = graph.node(`job:${job.name}`);
      const group = svg("g", { class: "job", "data-job": job.name, tabindex: "0", role: "button" },
        svg("rect", { x: box.x - box.width / 2, y: box.y - box.height / 2, width: box.width, height: box.height, rx: 4 }));
      if (job.for_each) {
        const top = box.y - box.height / 2;
        group.append(
          svg("rect", { class: "fan-out-border", x: box.x - box.width / 2 + 3, y: top + 3, width: box.width - 6, height: box.height - 6, rx: 3 }),
          svg("text", { x: box.x, y: top + 14, "text-anchor": "middle" }, job.name),
          svg("text", { class: "expression", x: box.x, y: top + 27, "text-anchor": "middle" }, `for_each ${job.for_each}`),
          svg("text", { class: "items", x: box.x, y: top + 40, "text-anchor": "middle" }, job.items || "not started"));
      } else {
        group.append(svg("text", { x: box.x, y: box.y + 4, "text-anchor": "middle" }, job.name));
      }
      group.addEventListener("click", () => onSelect(job.name));
      group.addEventListener("keydown", (event) => { if (event.key === "Enter") onSelect(job.name); });
      nodes.append(group);
      byJob.set(job.name, group);
    }
  }
  const running = phases.filter((phase) => !phase.handlers);
  for (const phase of running.slice(0, -1)) {
    const gate = graph.node(`gate:${phase.name}`);
    nodes.append(svg("circle", { class: "gate", cx: gate.x, cy: gate.y, r: GATE / 2 }));
  }
  root.append(clusters, edges, nodes);
  container.replaceChildren(root);
  return byJob;
}

function paintRun(byJob, phases, selected) {
  for (const phase of phases) {
    for (const job of phase.jobs) {
      const group = byJob.get(job.name);
      const classes = `job state-${job.state || "unknown"}${job.for_each ? " fan-out" : ""}${job.name === selected ? " selected" : ""}`;
      if (group.getAttribute("class") !== classes) group.setAttribute("class", classes);
      const counts = job.for_each && group.querySelector("text.items");
      if (counts && counts.textContent !== (job.items || "not started")) counts.textContent = job.items || "not started";
    }
  }
}
