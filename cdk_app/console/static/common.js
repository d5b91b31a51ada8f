"use strict";
// Helpers both pages use: building elements (never innerHTML with data), fetching JSON.
const SVG_NS = "http://www.w3.org/2000/svg";

function el(tag, attributes, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) {
    if (value !== null && value !== undefined) node.setAttribute(name, value);
  }
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

function svg(tag, attributes, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attributes || {})) node.setAttribute(name, value);
  for (const child of children) node.append(child);
  return node;
}

async function getJson(url) {
  const response = await fetch(url, { headers: { Accept: "application/json" } });
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

function showProblem(message) {
  const problem = document.getElementById("problem");
  problem.textContent = message || "";
  problem.hidden = !message;
}

function when(iso) {
  // UTC to the millisecond: the statuses of one run are often milliseconds apart.
  return iso ? new Date(iso).toISOString().replace("T", " ").slice(0, 23) : "";
}

function firstLine(text, limit) {
  if (!text) return "";
  const line = String(text).trim().split("\n")[0];
  return line.length > limit ? line.slice(0, limit - 1) + "…" : line;
}
