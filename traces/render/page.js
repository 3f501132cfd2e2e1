// The trace page: the autograd graph by module, a panel per node, and a timeline of backward.
// Everything it shows is in the data that traces/render/page.py embedded in the page (the JSON trace
// and a few facts Python worked out); nothing is fetched. It only reads that data.
"use strict";
(function () {
  const DATA = JSON.parse(document.getElementById("trace-data").textContent);
  const PAGE = DATA.page;
  const GRAPH = DATA.graph || { outputs: [], nodes: [], edges: [], modules: [] };
  const NODES = GRAPH.nodes;
  const EDGES = GRAPH.edges;
  const STEPS = DATA.backward;
  const SVG_NS = "http://www.w3.org/2000/svg";
  for (const node of NODES) node.derivative = PAGE.derivatives[node.derivative]; // shared: see page.py

  // --- numbers and tensors, written as the terminal writes them (Python's "{:.4g}") ---

  function g4(x) {
    if (typeof x !== "number") return String(x);
    if (Number.isInteger(x) && Math.abs(x) < 1e4) return String(x);
    const exponent = x === 0 ? 0 : Math.floor(Math.log10(Math.abs(x)));
    let text = x.toPrecision(4);
    if (exponent < -4 || exponent >= 4 || text.includes("e")) {
      const [mantissa, power] = x.toExponential(3).split("e");
      const n = parseInt(power, 10);
      return stripZeros(mantissa) + "e" + (n < 0 ? "-" : "+") + String(Math.abs(n)).padStart(2, "0");
    }
    return stripZeros(text);
  }
  function stripZeros(text) {
    return text.includes(".") ? text.replace(/0+$/, "").replace(/\.$/, "") : text;
  }
  function valuesText(values) {
    return Array.isArray(values) ? "[" + values.map(valuesText).join(", ") + "]" : g4(values);
  }
  function count(values) {
    return Array.isArray(values) ? values.reduce((total, v) => total + count(v), 0) : 1;
  }
  function shapeText(summary) {
    return summary.dtype + "[" + summary.shape.join(", ") + "]";
  }
  // A tensor summary in full (up to 16 values), or its dtype, shape and norm.
  function tensorText(summary) {
    if (summary === null || summary === undefined) return "None";
    if (summary.values !== null) return valuesText(summary.values);
    let text = shapeText(summary);
    if (summary.layout) text += " " + summary.layout + " nnz=" + summary.nnz;
    if (summary.norm !== null) text += " norm=" + g4(summary.norm);
    return text;
  }
  // Short enough for a label: a few values, else dtype, shape and norm.
  function shortText(summary) {
    if (summary && summary.values !== null && count(summary.values) > 4) {
      return shapeText(summary) + (summary.norm !== null ? " norm=" + g4(summary.norm) : "");
    }
    return tensorText(summary);
  }
  // The sum of some gradients' values, where all of them are known and have one shape; else null.
  function sumValues(summaries) {
    if (!summaries.length || summaries.some((s) => !s || s.values === null)) return null;
    const add = (a, b) => (Array.isArray(a) ? a.map((v, i) => add(v, b[i])) : a + b);
    return summaries.slice(1).reduce((total, s) => add(total, s.values), summaries[0].values);
  }
  function esc(text) {
    return String(text).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
  }

  // --- the graph: nodes, edges, modules ---

  const nodeById = new Map(NODES.map((node) => [node.id, node]));
  const moduleByName = new Map(GRAPH.modules.map((m) => [m.name, m]));
  for (const node of NODES) {
    if (node.module && !moduleByName.has(node.module)) moduleByName.set(node.module, { name: node.module, kind: node.module, parent: null });
  }
  const children = new Map([...moduleByName.keys()].map((name) => [name, []]));
  const rootModules = [];
  for (const m of moduleByName.values()) {
    if (m.parent !== null && moduleByName.has(m.parent)) children.get(m.parent).push(m.name);
    else rootModules.push(m.name);
  }
  const chains = new Map(); // module -> the modules around it and itself, outermost first
  function chainOf(name) {
    if (!name) return [];
    let chain = chains.get(name);
    if (!chain) {
      chain = [];
      for (let at = name; at !== null && moduleByName.has(at); at = moduleByName.get(at).parent) chain.push(at);
      chain.reverse();
      chains.set(name, chain);
    }
    return chain;
  }
  const depthOf = (name) => chainOf(name).length - 1;
  const edgesFrom = new Map(NODES.map((node) => [node.id, []]));
  const edgesInto = new Map(NODES.map((node) => [node.id, []]));
  for (const edge of EDGES) {
    edgesFrom.get(edge.source).push(edge);
    edgesInto.get(edge.target).push(edge);
  }
  // Rank: the longest path from an output, following the gradient (outputs 0, leaves last).
  const nodeRank = new Map();
  {
    const waiting = new Map(NODES.map((node) => [node.id, edgesInto.get(node.id).length]));
    const ready = NODES.filter((node) => waiting.get(node.id) === 0).map((node) => node.id);
    ready.forEach((id) => nodeRank.set(id, 0));
    for (let i = 0; i < ready.length; i++) {
      const id = ready[i];
      for (const edge of edgesFrom.get(id)) {
        nodeRank.set(edge.target, Math.max(nodeRank.get(edge.target) || 0, nodeRank.get(id) + 1));
        waiting.set(edge.target, waiting.get(edge.target) - 1);
        if (waiting.get(edge.target) === 0) ready.push(edge.target);
      }
    }
  }
  const nodeIndex = new Map(NODES.map((node, i) => [node.id, i]));

  // Large graphs open by module down to a depth, with nodes outside any module grouped by the
  // line of code that made them, and runs of sibling modules of the same structure folded.
  // (As traces/render/grouping.py does: a module above the depth is open when it holds other modules.)
  const LARGE = NODES.length > PAGE.node_by_node;
  const madeOnLine = (node) => (!node.module && node.path !== null ? node.path + ":" + node.line : null);
  const lineCounts = new Map();
  for (const node of NODES) if (madeOnLine(node) !== null) lineCounts.set(madeOnLine(node), (lineCounts.get(madeOnLine(node)) || 0) + 1);
  const lineKey = (node) => (LARGE && lineCounts.get(madeOnLine(node)) > 1 ? madeOnLine(node) : null);
  const open = new Set(LARGE ? [...moduleByName.keys()].filter((name) => depthOf(name) < PAGE.depth && children.get(name).length) : moduleByName.keys());
  const openLines = new Set();
  const runOf = new Map(); // module -> its run of same-structure siblings: {id, members, folded}
  for (const siblings of [rootModules, ...children.values()]) {
    let run = null;
    for (const name of siblings) {
      const key = PAGE.folds[name];
      if (run && key !== undefined && PAGE.folds[run.members[0]] === key) run.members.push(name);
      else run = { id: "fold:" + name, members: [name], folded: LARGE };
      runOf.set(name, run);
    }
  }

  function unitOf(node) {
    for (const name of chainOf(node.module)) {
      if (!open.has(name)) {
        const run = runOf.get(name);
        return run && run.folded && run.members.length > 1 ? run.id : "module:" + name;
      }
    }
    const key = lineKey(node);
    return key !== null && !openLines.has(key) ? "line:" + key : node.id;
  }

  // --- the backward timeline: the state after the first k steps ---

  const stepOf = new Map();
  STEPS.forEach((step, i) => { if (!stepOf.has(step.node)) stepOf.set(step.node, i); });
  let k = 0;
  const ran = (id) => stepOf.has(id) && stepOf.get(id) < k;
  const flowed = (edge) => ran(edge.source) && edge.gradient !== null;

  function leafName(node) {
    return node.variable || "leaf";
  }
  // A leaf's .grad as backward goes: what has arrived so far waits in the engine's input
  // buffer; AccumulateGrad, when it runs, puts the sum into .grad.
  function leafGradText(node) {
    const name = leafName(node);
    if (ran(node.id)) return name + ".grad = " + shortText(STEPS[stepOf.get(node.id)].arriving[0]);
    const into = edgesInto.get(node.id);
    const arrived = into.filter(flowed);
    if (!arrived.length) return name + ".grad: nothing yet";
    const sum = sumValues(arrived.map((edge) => edge.gradient));
    const sofar = sum !== null && count(sum) <= 4 ? valuesText(sum) + " so far " : "";
    return name + ".grad: " + sofar + "(" + arrived.length + " of " + into.length + " in)";
  }

  // --- the units shown, their boxes and the arrows between them ---

  let units = new Map(); // id -> {id, kind, nodes, lines, x, y, w, h, rank}
  let links = new Map(); // "a|b" -> {source, target, edges}: gradient flows from unit source to target
  let unitOfNode = new Map();
  let linkOfEdge = new Map();
  let selected = null; // {kind: "node" | "module", id}
  const measure = document.createElement("canvas").getContext("2d");
  const widths = new Map();
  function textWidth(text, small) {
    const key = (small ? "s" : "n") + text;
    let width = widths.get(key);
    if (width === undefined) {
      measure.font = (small ? "11px" : "12px") + " system-ui, sans-serif";
      width = measure.measureText(text).width;
      widths.set(key, width);
    }
    return width;
  }
  function nodeTitle(node, inside) {
    if (node.leaf) {
      let name = leafName(node);
      if (inside && name.startsWith(inside + ".")) name = name.slice(inside.length + 1);
      const values = node.leaf.values;
      return values === null || count(values) > 4 ? name + ": " + shapeText(node.leaf) : name + " = " + tensorText(node.leaf);
    }
    return node.variable ? node.variable + " = " + node.name : node.name;
  }
  function kindsText(members) {
    const counts = new Map();
    for (const node of members) counts.set(node.name, (counts.get(node.name) || 0) + 1);
    const parts = [...counts].map(([name, n]) => (n === 1 ? name : name + " x" + n));
    return parts.length > 3 ? parts.slice(0, 3).join(", ") + ", ..." : parts.join(", ");
  }
  const ordinal = (n) => n + (n % 100 >= 11 && n % 100 <= 13 ? "th" : { 1: "st", 2: "nd", 3: "rd" }[n % 10] || "th");
  const plural = (n, word) => n + " " + word + (n === 1 ? "" : "s");

  function describeUnit(unit) {
    const first = unit.nodes[0];
    if (unit.kind === "node") {
      const node = first;
      unit.node = node.id;
      unit.shape = node.leaf ? "leaf" : "function";
      unit.lines = [nodeTitle(node, node.module)];
      if (!node.leaf && node.path !== null) unit.lines.push({ small: node.path.split("/").pop() + ":" + node.line });
    } else if (unit.kind === "module") {
      const m = moduleByName.get(unit.id.slice(7));
      unit.module = m.name;
      unit.shape = "module";
      unit.lines = [m.name + (m.kind !== m.name ? " (" + m.kind + ")" : ""), { small: plural(unit.nodes.length, "node") + ": " + kindsText(unit.nodes) }];
    } else if (unit.kind === "fold") {
      const run = runOf.get(unit.id.slice(5));
      const m = moduleByName.get(run.members[0]);
      unit.module = m.name;
      unit.shape = "fold";
      unit.lines = [run.members[0] + " ... " + run.members[run.members.length - 1], { small: run.members.length + " x " + m.kind + ", the same structure; " + plural(unit.nodes.length, "node") }];
    } else {
      unit.shape = "line";
      unit.lines = ["line " + unit.id.slice(5), { small: plural(unit.nodes.length, "node") + ": " + kindsText(unit.nodes) }];
    }
    unit.lines.push({ state: true });
    const textWidths = unit.lines.map((line) => (typeof line === "string" ? textWidth(line) : line.small ? textWidth(line.small, true) : textWidth(widestState(unit), true)));
    unit.w = Math.max(...textWidths) + (unit.shape === "leaf" ? 44 : 20);
    unit.h = unit.lines.length * 15 + 10;
  }

  // The longest text the timeline will put in a unit's last line, to size its box once.
  function widestState(unit) {
    const node = unit.nodes[0];
    if (unit.kind !== "node") return "ran " + unit.nodes.length + " of " + unit.nodes.length;
    if (!stepOf.has(node.id)) return node.leaf ? leafName(node) + ".grad: nothing yet" : "";
    const arriving = shortText(STEPS[stepOf.get(node.id)].arriving[0]);
    if (!node.leaf) return "ran " + (stepOf.get(node.id) + 1) + ": grad in " + arriving;
    const edges = edgesInto.get(node.id).length;
    return leafName(node) + ".grad: " + arriving + " so far (" + edges + " of " + edges + " in)";
  }

  function collectUnits() {
    units = new Map();
    unitOfNode = new Map();
    for (const node of NODES) {
      const id = unitOf(node);
      let unit = units.get(id);
      if (!unit) {
        const kind = id === node.id ? "node" : id.slice(0, id.indexOf(":"));
        unit = { id, kind, nodes: [], maxRank: -Infinity, leafRank: -Infinity, first: Infinity };
        units.set(id, unit);
      }
      unit.nodes.push(node);
      // Where forward first reached the unit: its function nodes' largest rank (a parameter's
      // AccumulateGrad sits one further out than the node that uses it, whatever came before).
      if (!node.leaf) unit.maxRank = Math.max(unit.maxRank, nodeRank.get(node.id) || 0);
      else unit.leafRank = Math.max(unit.leafRank, nodeRank.get(node.id) || 0);
      unit.first = Math.min(unit.first, nodeIndex.get(node.id));
      unitOfNode.set(node.id, unit);
    }
    for (const unit of units.values()) if (unit.maxRank === -Infinity) unit.maxRank = unit.leafRank; // leaves only
    links = new Map();
    linkOfEdge = new Map();
    for (const edge of EDGES) {
      const a = unitOfNode.get(edge.source), b = unitOfNode.get(edge.target);
      if (a === b) continue;
      const key = a.id + "|" + b.id;
      let link = links.get(key);
      if (!link) links.set(key, (link = { key, source: a, target: b, edges: [] }));
      link.edges.push(edge);
      linkOfEdge.set(edge, link);
    }
    units.forEach(describeUnit);
  }

  // A layered layout: ranks by the longest path from the outputs, order within a rank by the
  // mean position of the neighbours, then x under the mean of the neighbours placed above.
  // Inputs (the largest rank) are drawn at the top, the outputs at the bottom, as forward ran.
  function layout() {
    // A unit stands where its first node in forward order is (a module called twice, such as
    // a block's ReLU, is placed where it was first called).
    const order = [...units.values()].sort((a, b) => a.maxRank - b.maxRank || a.first - b.first);
    order.forEach((unit, i) => { unit.position = i; unit.rank = 0; unit.inputs = []; unit.outputs = []; });
    for (const link of links.values()) {
      // Between modules, gradients can flow both ways (a module used twice): order decides.
      const [near, far] = link.source.position < link.target.position ? [link.source, link.target] : [link.target, link.source];
      near.inputs.push(far);
      far.outputs.push(near);
    }
    // Rows from the top: each unit one row below its lowest input; a unit with no input (a
    // parameter) one row above its first consumer, so it sits beside what uses it.
    const row = new Map();
    for (let i = order.length - 1; i >= 0; i--) {
      const unit = order[i];
      row.set(unit, unit.inputs.reduce((r, input) => Math.max(r, row.get(input) + 1), 0));
    }
    for (const unit of order) {
      if (!unit.inputs.length && unit.outputs.length) row.set(unit, Math.max(0, Math.min(...unit.outputs.map((u) => row.get(u))) - 1));
    }
    const lastRow = Math.max(0, ...row.values());
    for (const unit of order) unit.rank = lastRow - row.get(unit);
    const layers = [];
    for (const unit of order) (layers[unit.rank] = layers[unit.rank] || []).push(unit);
    for (let r = 0; r < layers.length; r++) layers[r] = layers[r] || [];
    const number = (layer) => layer.forEach((unit, i) => (unit.slot = i));
    layers.forEach(number);
    const meanSlot = (list, fallback) => (list.length ? list.reduce((t, u) => t + u.slot, 0) / list.length : fallback);
    for (let sweep = 0; sweep < 4; sweep++) {
      const fromTop = sweep % 2 === 0;
      for (let r = fromTop ? layers.length - 2 : 1; fromTop ? r >= 0 : r < layers.length; r += fromTop ? -1 : 1) {
        const layer = layers[r];
        const key = new Map(layer.map((u) => [u, meanSlot(fromTop ? u.inputs.filter((v) => v.rank === r + 1) : u.outputs.filter((v) => v.rank === r - 1), u.slot)]));
        layer.sort((a, b) => key.get(a) - key.get(b) || a.slot - b.slot);
        number(layer);
      }
    }
    const GAP = 24, RANK_GAP = 58;
    let y = 0;
    for (let r = layers.length - 1; r >= 0; r--) {
      const layer = layers[r];
      const wanted = layer.map((u) => {
        const above = u.inputs.filter((v) => v.x !== undefined);
        return above.length ? above.reduce((t, v) => t + v.x, 0) / above.length : null;
      });
      let right = -Infinity; // the right edge of the unit placed before
      const placed = layer.map((u, i) => {
        let x = wanted[i] !== null ? wanted[i] : right === -Infinity ? 0 : right + GAP + u.w / 2;
        if (right !== -Infinity) x = Math.max(x, right + GAP + u.w / 2);
        right = x + u.w / 2;
        return x;
      });
      const moved = wanted.map((w, i) => (w === null ? null : placed[i] - w)).filter((d) => d !== null);
      const shift = moved.length ? moved.reduce((t, d) => t + d, 0) / moved.length : (placed[0] + placed[placed.length - 1]) / 2;
      const height = Math.max(...layer.map((u) => u.h));
      layer.forEach((u, i) => { u.x = placed[i] - shift; u.y = y + (height - u.h) / 2; });
      y += height + RANK_GAP;
    }
  }

  // --- drawing ---

  const svg = document.getElementById("graph");
  const viewport = document.getElementById("viewport");
  const view = document.getElementById("view");
  function element(name, attributes, parent) {
    const el = document.createElementNS(SVG_NS, name);
    for (const key in attributes) el.setAttribute(key, attributes[key]);
    if (parent) parent.appendChild(el);
    return el;
  }
  function set(el, property, value) {
    if (el[property] !== value) el[property] = value;
  }

  // The open module (or line of code) each unit is drawn inside, innermost last.
  function clustersOf(unit) {
    if (unit.kind === "node") {
      const node = unit.nodes[0];
      const key = lineKey(node);
      return key !== null ? ["line:" + key] : chainOf(node.module).map((name) => "module:" + name);
    }
    if (unit.kind === "module" || unit.kind === "fold") {
      const parent = moduleByName.get(unit.module).parent;
      return chainOf(parent).map((name) => "module:" + name);
    }
    return [];
  }

  function drawClusters(layer) {
    const bounds = new Map();
    for (const unit of units.values()) {
      for (const id of clustersOf(unit)) {
        const b = bounds.get(id) || { left: Infinity, right: -Infinity, top: Infinity, bottom: -Infinity };
        b.left = Math.min(b.left, unit.x - unit.w / 2);
        b.right = Math.max(b.right, unit.x + unit.w / 2);
        b.top = Math.min(b.top, unit.y);
        b.bottom = Math.max(b.bottom, unit.y + unit.h);
        bounds.set(id, b);
      }
    }
    const depth = (id) => (id.startsWith("module:") ? depthOf(id.slice(7)) : 0);
    const ids = [...bounds.keys()].sort((a, b) => depth(b) - depth(a));
    for (const id of ids) {
      const b = bounds.get(id);
      b.left -= 8; b.right += 8; b.top -= 20; b.bottom += 8;
      const parent = id.startsWith("module:") ? moduleByName.get(id.slice(7)).parent : null;
      const outer = parent !== null ? bounds.get("module:" + parent) : undefined;
      if (outer) {
        outer.left = Math.min(outer.left, b.left); outer.right = Math.max(outer.right, b.right);
        outer.top = Math.min(outer.top, b.top); outer.bottom = Math.max(outer.bottom, b.bottom);
      }
    }
    for (const id of ids.reverse()) {
      const b = bounds.get(id);
      // A dashed frame thousands of boxes long takes the browser half a second per frame to paint.
      const long = b.bottom - b.top + b.right - b.left > 20000;
      const g = element("g", { class: long ? "cluster long" : "cluster", "data-cluster": id }, layer);
      element("rect", { x: b.left, y: b.top, width: b.right - b.left, height: b.bottom - b.top, rx: 6 }, g);
      const name = id.slice(id.indexOf(":") + 1);
      const m = moduleByName.get(name);
      const label = element("text", { x: b.left + 6, y: b.top + 13 }, g);
      label.textContent = id.startsWith("module:") ? name + (m.kind !== name ? " (" + m.kind + ")" : "") + "  [close]" : "line " + name + "  [close]";
      g.addEventListener("click", () => { if (!dragged) closeCluster(id); }); // its frame or its name
      element("title", {}, g).textContent = "click: close";
    }
  }

  function drawUnit(unit, layer) {
    const g = element("g", { class: "box " + unit.shape, "data-unit": unit.id }, layer);
    if (unit.node) g.setAttribute("data-node", unit.node);
    if (unit.module) g.setAttribute("data-module", unit.module);
    const left = unit.x - unit.w / 2;
    if (unit.shape === "leaf") element("ellipse", { cx: unit.x, cy: unit.y + unit.h / 2, rx: unit.w / 2, ry: unit.h / 2 + 2 }, g);
    else element("rect", { x: left, y: unit.y, width: unit.w, height: unit.h, rx: unit.shape === "function" ? 3 : 9 }, g);
    const title = element("title", {}, g);
    title.textContent = unit.kind === "node" ? "click: the node's panel" : "click: open";
    unit.lines.forEach((line, i) => {
      const y = unit.y + 17 + 15 * i;
      const text = element("text", { x: unit.x, y, "text-anchor": "middle" }, g);
      if (typeof line === "string") text.textContent = line;
      else if (line.small) { text.setAttribute("class", "small"); text.textContent = line.small; }
      else { text.setAttribute("class", "grad"); unit.stateEl = text; }
    });
    unit.el = g;
    g.addEventListener("click", () => { if (!dragged) clickUnit(unit); });
  }

  function drawLink(link, layer) {
    // Forward ran from the edge's target (an input) to its source: the arrow points that way.
    const from = link.target, to = link.source;
    const down = from.y < to.y;
    const x1 = from.x, y1 = down ? from.y + from.h : from.y;
    const x2 = to.x, y2 = down ? to.y : to.y + to.h;
    const bend = Math.max(20, Math.abs(y2 - y1) / 2) * (down ? 1 : -1);
    const g = element("g", { class: "edge", "data-link": link.key }, layer);
    element("path", { d: `M${x1},${y1} C${x1},${y1 + bend} ${x2},${y2 - bend} ${x2},${y2}`, "marker-end": "url(#arrow)" }, g);
    const label = element("text", { x: (x1 + x2) / 2 + 4, y: (y1 + y2) / 2 + 4 }, g);
    link.el = g;
    link.labelEl = label;
  }

  let transform = { x: 0, y: 0, s: 1 };
  function applyTransform() {
    viewport.setAttribute("transform", `translate(${transform.x},${transform.y}) scale(${transform.s})`);
    if (CULL && !redrawQueued) {
      redrawQueued = true;
      requestAnimationFrame(() => { redrawQueued = false; drawVisible(); });
    }
  }

  // A graph of thousands of boxes (a long chain opened) is drawn only where the view is, and
  // a screen around it: the browser then repaints a few hundred elements per step, not all.
  const CULL_ABOVE = 1500; // boxes
  let CULL = false, redrawQueued = false, layers = null;
  function render(anchor) {
    collectUnits();
    layout();
    CULL = units.size > CULL_ABOVE;
    svg.dataset.units = String(units.size);
    viewport.textContent = "";
    const clusterLayer = element("g", { id: "clusters" }, viewport);
    layers = { links: element("g", { id: "links" }, viewport), units: element("g", { id: "units" }, viewport) };
    drawClusters(clusterLayer);
    if (anchor) keepInPlace(anchor);
    drawVisible();
  }
  function drawVisible() {
    const current = k > 0 ? STEPS[k - 1].node : null;
    let region = null;
    if (CULL) {
      const box = viewSize || (viewSize = view.getBoundingClientRect());
      const s = transform.s, left = -transform.x / s, top = -transform.y / s, w = box.width / s, h = box.height / s;
      region = { left: left - w, right: left + 2 * w, top: top - h, bottom: top + 2 * h };
    }
    const inside = (l, r, t, b) => !region || (r >= region.left && l <= region.right && b >= region.top && t <= region.bottom);
    for (const unit of units.values()) {
      const wanted = inside(unit.x - unit.w / 2, unit.x + unit.w / 2, unit.y, unit.y + unit.h);
      if (wanted && !unit.el) { drawUnit(unit, layers.units); refreshUnit(unit, current); }
      else if (!wanted && unit.el) { unit.el.remove(); unit.el = null; unit.classes = unit.text = undefined; }
    }
    for (const link of links.values()) {
      const a = link.source, b = link.target;
      const wanted = inside(Math.min(a.x, b.x), Math.max(a.x, b.x), Math.min(a.y, b.y), Math.max(a.y + a.h, b.y + b.h));
      if (wanted && !link.el) { drawLink(link, layers.links); refreshLink(link, current); }
      else if (!wanted && link.el) { link.el.remove(); link.el = null; link.classes = link.text = undefined; }
    }
  }

  // The state of the timeline on the boxes and arrows: all of them, or only those that
  // show the nodes given (one step changes a few: the node that ran, the leaves it fed).
  function refreshState(changedNodes) {
    const current = k > 0 ? STEPS[k - 1].node : null;
    let unitsNow = units.values(), linksNow = links.values();
    if (changedNodes) {
      const ids = changedNodes.filter((id) => id !== null);
      const fed = ids.flatMap((id) => edgesFrom.get(id));
      unitsNow = new Set([...ids, ...fed.map((edge) => edge.target)].map((id) => unitOfNode.get(id)));
      linksNow = new Set(fed.map((edge) => linkOfEdge.get(edge)).filter(Boolean));
    }
    for (const unit of unitsNow) refreshUnit(unit, current);
    for (const link of linksNow) refreshLink(link, current);
  }
  function refreshUnit(unit, current) {
    if (!unit.el) return; // not drawn (out of view)
    let text = "", ranCount = 0, isCurrent = false;
    for (const node of unit.nodes) {
      if (ran(node.id)) ranCount++;
      if (node.id === current) isCurrent = true;
    }
    if (unit.kind === "node") {
      const node = unit.nodes[0];
      if (node.leaf) text = leafGradText(node);
      else if (ranCount) text = "ran " + (stepOf.get(node.id) + 1) + ": grad in " + shortText(STEPS[stepOf.get(node.id)].arriving[0]);
    } else if (ranCount) {
      text = "ran " + ranCount + " of " + unit.nodes.length;
    }
    const selectedHere = selected && ((selected.kind === "node" && unitOfNode.get(selected.id) === unit) || (selected.kind === "module" && unit.module === selected.id));
    const classes = "box " + unit.shape + (ranCount ? " ran" : "") + (isCurrent ? " current" : "") + (selectedHere ? " selected" : "");
    if (unit.classes !== classes) unit.el.setAttribute("class", (unit.classes = classes));
    if (unit.text !== text) unit.stateEl.textContent = unit.text = text;
  }
  function refreshLink(link, current) {
    if (!link.el) return;
    const arrived = link.edges.filter(flowed);
    let label = "";
    if (arrived.length && link.edges.length === 1) label = "grad " + shortText(arrived[0].gradient);
    else if (arrived.length) label = arrived.length + " of " + link.edges.length + " grads";
    const now = current !== null && link.edges.some((edge) => edge.source === current);
    const classes = "edge" + (arrived.length ? " flowed" : "") + (now ? " now" : "");
    if (link.classes !== classes) link.el.setAttribute("class", (link.classes = classes));
    if (link.text !== label) link.labelEl.textContent = link.text = label;
  }

  // --- opening and closing ---

  function unfold(name) {
    const run = runOf.get(name);
    if (run) run.folded = false;
  }
  function anchorOf(unit) {
    return unit ? { nodes: unit.nodes.map((n) => n.id), x: unit.x, y: unit.y + unit.h / 2 } : null;
  }
  // After a new layout, move the view so that what was clicked stays where it was on the screen.
  function keepInPlace(anchor) {
    let left = Infinity, right = -Infinity, top = Infinity, bottom = -Infinity;
    for (const id of anchor.nodes) {
      const unit = unitOfNode.get(id);
      left = Math.min(left, unit.x - unit.w / 2); right = Math.max(right, unit.x + unit.w / 2);
      top = Math.min(top, unit.y); bottom = Math.max(bottom, unit.y + unit.h);
    }
    transform.x += (anchor.x - (left + right) / 2) * transform.s;
    transform.y += (anchor.y - (top + bottom) / 2) * transform.s;
    applyTransform();
  }
  function clickUnit(unit) {
    if (unit.kind === "node") return select({ kind: "node", id: unit.node });
    const anchor = anchorOf(unit);
    if (unit.kind === "module") {
      open.add(unit.module);
      unfold(unit.module);
      selected = { kind: "module", id: unit.module };
      showModule(unit.module);
    } else if (unit.kind === "fold") {
      unfold(unit.module);
    } else {
      openLines.add(unit.id.slice(5));
    }
    render(anchor);
  }
  function closeCluster(id) {
    const name = id.slice(id.indexOf(":") + 1);
    const inside = NODES.filter((node) => (id.startsWith("line:") ? lineKey(node) === name : chainOf(node.module).includes(name)));
    if (id.startsWith("line:")) openLines.delete(name);
    else {
      open.delete(name);
      const run = runOf.get(name);
      if (LARGE && run && run.members.every((member) => !open.has(member))) run.folded = true;
    }
    const anchorUnits = [...new Set(inside.map((node) => unitOfNode.get(node.id)))];
    const xs = anchorUnits.map((u) => u.x), ys = anchorUnits.map((u) => u.y + u.h / 2);
    render(inside.length ? { nodes: [inside[0].id], x: (Math.min(...xs) + Math.max(...xs)) / 2, y: (Math.min(...ys) + Math.max(...ys)) / 2 } : null);
  }
  // Open whatever hides a node, then show it.
  function reveal(id) {
    const node = nodeById.get(id);
    for (const name of chainOf(node.module)) { open.add(name); unfold(name); }
    const key = lineKey(node);
    if (key !== null) openLines.add(key);
    render();
    select({ kind: "node", id });
    centerOn(unitOfNode.get(id));
  }
  function revealModule(name) {
    for (const outer of chainOf(name).slice(0, -1)) { open.add(outer); unfold(outer); }
    unfold(name);
    selected = { kind: "module", id: name };
    render();
    showModule(name);
    const unit = [...units.values()].find((u) => u.module === name) || unitOfNode.get(NODES.find((n) => chainOf(n.module).includes(name)).id);
    centerOn(unit);
  }
  function centerOn(unit) {
    const box = view.getBoundingClientRect();
    transform.s = Math.max(transform.s, 0.6);
    transform.x = box.width / 2 - unit.x * transform.s;
    transform.y = box.height / 2 - (unit.y + unit.h / 2) * transform.s;
    applyTransform();
  }
  let viewSize = null; // the graph's area on the screen, read once (reading it makes the browser lay out)
  window.addEventListener("resize", () => (viewSize = null));
  function ensureVisible(unit) {
    const box = viewSize || (viewSize = view.getBoundingClientRect());
    const x = unit.x * transform.s + transform.x, y = (unit.y + unit.h / 2) * transform.s + transform.y;
    if (x < 0 || x > box.width || y < 0 || y > box.height) centerOn(unit);
  }
  function fit() {
    const box = view.getBoundingClientRect();
    let left = Infinity, right = -Infinity, top = Infinity, bottom = -Infinity;
    for (const u of units.values()) {
      left = Math.min(left, u.x - u.w / 2); right = Math.max(right, u.x + u.w / 2);
      top = Math.min(top, u.y); bottom = Math.max(bottom, u.y + u.h);
    }
    if (left === Infinity) return;
    const s = Math.min(1.3, (box.width - 40) / (right - left), (box.height - 40) / (bottom - top));
    transform.s = Math.max(s, 0.3);
    transform.x = box.width / 2 - ((left + right) / 2) * transform.s;
    // Too tall to fit: show the bottom, where backward starts.
    transform.y = s >= 0.3 ? box.height / 2 - ((top + bottom) / 2) * transform.s : box.height - 20 - bottom * transform.s;
    applyTransform();
  }

  // --- the panel ---

  const panel = document.getElementById("panel");
  function codeLink(path, line) {
    const text = path + ":" + line;
    const relative = PAGE.links[path];
    if (relative && location.protocol === "file:") {
      // Only opened from the disk does the page know where the file is: beside it.
      const file = decodeURIComponent(new URL(relative, location.href).pathname);
      return `<a class="code" href="vscode://file${esc(encodeURI(file))}:${line}" title="open in VSCode">${esc(text)}</a>`;
    }
    return `<code class="code">${esc(text)}</code>`;
  }
  function sourceLink(source) {
    if (!source) return "";
    const where = esc(source.path + (source.line ? ":" + source.line : ""));
    return source.url ? `<a href="${esc(source.url)}" target="_blank" rel="noopener">${where}</a>` : `<code>${where}</code>` + (source.kind === "generated" ? " (generated while torch was built)" : "");
  }
  function moduleText(name) {
    const m = moduleByName.get(name);
    return m.kind !== name ? `${name} (${m.kind})` : name;
  }
  function nodeButton(id) {
    return `<a href="#" data-goto="${esc(id)}">${esc(nodeTitle(nodeById.get(id)))}</a>`;
  }
  const section = (title, body) => (body ? `<h3>${esc(title)}</h3>${body}` : "");

  function showNode(id) {
    const node = nodeById.get(id);
    const d = node.derivative;
    const parts = [`<h2 id="panel-title">${esc(nodeTitle(node))}</h2>`, `<div id="panel-now"></div>`];
    parts.push(`<div class="muted">${esc(node.name)} · node ${esc(node.id)}${node.made !== null ? " · the " + ordinal(node.made + 1) + " node autograd made" : ""}</div>`);
    parts.push(section("Module", node.module ? `<a href="#" data-module="${esc(node.module)}">${esc(moduleText(node.module))}</a>` : `<span class="muted">none: made outside any nn.Module</span>`));
    parts.push(section("Made by", node.path !== null ? codeLink(node.path, node.line) : `<span class="muted">autograd, for the leaf tensor${node.variable ? " " + esc(node.variable) : ""}</span>`));
    if (node.leaf) parts.push(section("Leaf tensor", `<code>${esc(shapeText(node.leaf))}${node.leaf.values !== null ? " = " + esc(tensorText(node.leaf)) : ""}</code>`));
    if (d) {
      let body = `<div>${esc(d.summary)}</div>`;
      if (d.schema) body += `<div class="muted"><code>${esc(d.schema)}</code></div>`;
      for (const f of d.formulas) {
        body += `<pre class="formula">grad_${esc(f.inputs.join(", grad_"))} = ${esc(f.formula)}${f.plain ? "\n  for real tensors: " + esc(f.plain) : ""}</pre>`;
      }
      body += `<div>${sourceLink(d.source)}</div>`;
      parts.push(section("Derivative", body));
    }
    const equations = PAGE.equations[id];
    parts.push(section("With this run's numbers", equations && equations.length ? equations.map((line) => `<pre class="equation">${esc(line)}</pre>`).join("") : `<span class="muted">${stepOf.has(id) ? "no formula" : "did not run in the traced backward"}</span>`));
    if (node.saved.length) {
      const rows = node.saved.map((s) => {
        let what = s.value !== null ? esc(s.value) : s.shape !== null ? esc(s.dtype + "[" + s.shape.join(", ") + "]") + (s.values !== null ? " = " + esc(valuesText(s.values)) : "") : "";
        if (s.packed) what += " packed " + esc(s.packed);
        const version = s.version === null ? "" : "version " + s.version + (s.version_now !== null ? ", now " + s.version_now + " (changed in place: backward raises)" : "");
        return `<tr class="saved"><td><code>${esc(s.name)}</code></td><td>${what}</td><td>${version}</td><td>${s.freed ? "freed by backward" : ""}</td></tr>`;
      });
      parts.push(section("Saved for backward", `<table>${rows.join("")}</table>`));
    }
    if (stepOf.has(id)) {
      const step = STEPS[stepOf.get(id)];
      let body = `<div>step ${step.order + 1} of ${STEPS.length} (<a href="#" data-step="${step.order + 1}">go there</a>)</div>`;
      const into = edgesInto.get(id);
      const arriving = step.arriving.map((g, slot) => {
        const from = into.filter((edge) => edge.input_nr === slot);
        const hooked = step.before_hooks[slot] ? ` (sent ${esc(tensorText(step.before_hooks[slot]))}, a tensor hook changed it)` : "";
        const senders = from.length ? " from " + from.map((edge) => nodeButton(edge.source) + ": " + esc(tensorText(edge.gradient))).join(", ") : "";
        return `<tr class="arriving"><td>in ${slot}</td><td><code>${esc(tensorText(g))}</code>${hooked}${from.length > 1 ? senders : from.length ? " from " + nodeButton(from[0].source) : " (the start of backward)"}</td></tr>`;
      });
      const out = edgesFrom.get(id);
      const leaving = step.leaving.map((g, slot) => {
        const edge = out.find((e) => e.output_nr === slot);
        return `<tr class="leaving"><td>out ${slot}</td><td><code>${esc(tensorText(g))}</code>${edge ? " to " + nodeButton(edge.target) : " (needs no gradient)"}</td></tr>`;
      });
      body += `<table>${arriving.join("")}${leaving.join("")}</table>`;
      parts.push(section("Backward", body));
    }
    if (d && d.op) {
      const kernels = DATA.kernels.filter((kernel) => kernel.op === "aten::" + d.op);
      const body = kernels.map((kernel) => {
        const keys = kernel.dispatch.map((step) => esc(step.key) + (step.fallthrough ? " (falls through)" : "")).join(" → ");
        const kernelText = kernel.kernel ? `${esc(kernel.kernel)} (${esc(kernel.kernel_key)})${kernel.symbol ? ", C++ <code>" + esc(kernel.symbol) + "</code>" : ""}` : esc(kernel.note || "no kernel listed");
        return `<div class="kernel"><b>${esc(kernel.op)}</b> in ${esc(kernel.phase)} on ${esc(kernel.device_key || "?")}: ${kernelText}<div class="muted">dispatch keys: ${keys || "none recorded"}</div></div>`;
      });
      parts.push(section("The op that made it, below Python", body.join("") || `<span class="muted">aten::${esc(d.op)} was not recorded</span>`));
    }
    panel.innerHTML = parts.join("");
  }

  function showModule(name) {
    const m = moduleByName.get(name);
    const inside = NODES.filter((node) => chainOf(node.module).includes(name));
    const parts = [`<h2 id="panel-title">${esc(moduleText(name))}</h2>`];
    if (m.parent) parts.push(`<div>inside <a href="#" data-module="${esc(m.parent)}">${esc(moduleText(m.parent))}</a></div>`);
    if (m.path) parts.push(section("First called by", codeLink(m.path, m.line)));
    parts.push(section(plural(inside.length, "node"), `<div>${esc(kindsText(inside))}</div>` + inside.slice(0, 60).map((node) => `<div>${nodeButton(node.id)}</div>`).join("") + (inside.length > 60 ? `<div class="muted">... and ${inside.length - 60} more: search for them</div>` : "")));
    panel.innerHTML = parts.join("");
  }

  function showIntro() {
    panel.innerHTML = `<h2 id="panel-title">${esc(DATA.scenario)}</h2>
      <p>The autograd graph of one run, drawn as forward ran: inputs and parameters at the top, the output at the bottom. Backward runs from the bottom up.</p>
      <ul>
        <li>Click a node for its panel: where it was made, its formula with this run's numbers, what it saved, the gradients in and out.</li>
        <li>Click a module to open it, its frame to close it. Dashed boxes fold sibling modules of the same structure.</li>
        <li>The timeline below steps through backward in the engine's order (arrow keys too). A leaf's gradients wait in the engine's input buffer until its AccumulateGrad runs and puts their sum into <code>.grad</code>.</li>
        <li>Drag to pan, the mouse wheel to zoom; search by node, module, parameter or op.</li>
      </ul>
      <table><tr><td>torch</td><td>${esc(DATA.torch_version)}</td></tr><tr><td>device</td><td>${esc(DATA.device)}</td></tr>
      <tr><td>nodes</td><td>${NODES.length}</td></tr><tr><td>backward steps</td><td>${STEPS.length}</td></tr>
      <tr><td>ATen op calls</td><td>${DATA.ops.reduce((t, op) => t + op.count, 0)}</td></tr></table>`;
  }

  function select(what) {
    selected = what;
    if (what.kind === "node") showNode(what.id);
    else showModule(what.id);
    refreshState();
    showNow();
  }
  // The selected node at the timeline's step: a leaf's .grad so far, or whether it has run.
  function showNow() {
    const now = document.getElementById("panel-now");
    if (!now || !selected || selected.kind !== "node") return;
    const node = nodeById.get(selected.id);
    const at = stepOf.get(node.id);
    let text = at === undefined ? "did not run in the traced backward" : ran(node.id) ? "ran at step " + (at + 1) : "runs at step " + (at + 1);
    if (node.leaf) text = leafGradText(node) + " · " + text;
    now.textContent = "At step " + k + " of " + STEPS.length + ": " + text;
  }

  panel.addEventListener("click", (event) => {
    const link = event.target.closest("a[data-goto], a[data-module], a[data-step]");
    if (!link) return;
    event.preventDefault();
    if (link.dataset.goto) reveal(link.dataset.goto);
    else if (link.dataset.module) revealModule(link.dataset.module);
    else setStep(Number(link.dataset.step));
  });

  // --- search: by node name, module path, parameter name or op ---

  const searchBox = document.getElementById("search");
  const results = document.getElementById("results");
  const searchIndex = [
    ...NODES.map((node) => ({
      kind: "node", id: node.id, label: nodeTitle(node), name: (node.variable || "").toLowerCase(),
      what: [node.name, node.module, node.derivative && node.derivative.op ? "aten::" + node.derivative.op : null].filter(Boolean).join(" · "),
    })),
    ...[...moduleByName.values()].map((m) => ({ kind: "module", id: m.name, label: moduleText(m.name), name: m.name.toLowerCase(), what: "module" })),
  ];
  for (const entry of searchIndex) entry.text = (entry.label + " " + entry.what + " " + entry.id).toLowerCase();
  function search(query) {
    const terms = query.toLowerCase().split(/\s+/).filter(Boolean);
    if (!terms.length) return [];
    const whole = terms.join(" ");
    const found = searchIndex.filter((entry) => terms.every((term) => entry.text.includes(term)));
    const rank = (entry) => (entry.name === whole ? 0 : entry.name.startsWith(whole) ? 1 : entry.kind === "module" ? 2 : 3);
    return found.sort((a, b) => rank(a) - rank(b)).slice(0, 100);
  }
  function choose(entry) {
    results.textContent = "";
    if (entry.kind === "node") reveal(entry.id);
    else revealModule(entry.id);
  }
  searchBox.addEventListener("input", () => {
    results.textContent = "";
    for (const entry of search(searchBox.value)) {
      const item = document.createElement("li");
      item.dataset.kind = entry.kind;
      item.dataset.id = entry.id;
      item.innerHTML = `${esc(entry.label)} <span class="what">${esc(entry.what)}</span>`;
      item.addEventListener("click", () => choose(entry));
      results.appendChild(item);
    }
  });
  searchBox.addEventListener("keydown", (event) => {
    if (event.key === "Enter") {
      const first = search(searchBox.value)[0];
      if (first) choose(first);
    } else if (event.key === "Escape") results.textContent = "";
  });

  // --- the timeline ---

  const slider = document.getElementById("slider");
  const stepText = document.getElementById("step-text");
  slider.max = String(STEPS.length);
  function setStep(to) {
    to = Math.max(0, Math.min(STEPS.length, to));
    const before = k;
    const nodeAt = (step) => (step > 0 ? STEPS[step - 1].node : null);
    k = to;
    if (slider.value !== String(k)) slider.value = String(k);
    // One step forward or back changes the node of that step, and which node is current.
    if (Math.abs(to - before) === 1) refreshState([nodeAt(Math.max(to, before)), nodeAt(before), nodeAt(to)]);
    else refreshState();
    if (k === 0) stepText.textContent = `before backward: ${STEPS.length} steps to run`;
    else {
      const step = STEPS[k - 1];
      stepText.textContent = `step ${k} of ${STEPS.length}: ${nodeTitle(nodeById.get(step.node))} ran, grad in ${shortText(step.arriving[0])}`;
      ensureVisible(unitOfNode.get(step.node));
    }
    document.body.dataset.step = String(k);
    showNow();
  }
  slider.addEventListener("input", () => setStep(Number(slider.value)));
  document.getElementById("first").addEventListener("click", () => setStep(0));
  document.getElementById("back").addEventListener("click", () => setStep(k - 1));
  document.getElementById("forward").addEventListener("click", () => setStep(k + 1));
  document.getElementById("last").addEventListener("click", () => setStep(STEPS.length));
  document.addEventListener("keydown", (event) => {
    if (event.target === searchBox || event.target === slider) return; // the slider moves itself
    const to = { ArrowRight: k + 1, ArrowLeft: k - 1, Home: 0, End: STEPS.length }[event.key];
    if (to === undefined) return;
    event.preventDefault();
    setStep(to);
  });

  // --- pan and zoom ---

  let drag = null, dragged = false;
  svg.addEventListener("pointerdown", (event) => {
    drag = { x: event.clientX, y: event.clientY, tx: transform.x, ty: transform.y };
    dragged = false;
  });
  window.addEventListener("pointermove", (event) => {
    if (!drag) return;
    const dx = event.clientX - drag.x, dy = event.clientY - drag.y;
    if (!dragged && Math.abs(dx) + Math.abs(dy) < 4) return;
    dragged = true;
    view.classList.add("dragging");
    transform.x = drag.tx + dx;
    transform.y = drag.ty + dy;
    applyTransform();
  });
  window.addEventListener("pointerup", () => { drag = null; view.classList.remove("dragging"); });
  svg.addEventListener("wheel", (event) => {
    event.preventDefault();
    const box = svg.getBoundingClientRect();
    const px = event.clientX - box.left, py = event.clientY - box.top;
    const factor = Math.exp(-event.deltaY * 0.0015);
    const s = Math.max(0.02, Math.min(4, transform.s * factor));
    transform.x = px - ((px - transform.x) * s) / transform.s;
    transform.y = py - ((py - transform.y) * s) / transform.s;
    transform.s = s;
    applyTransform();
  }, { passive: false });

  document.getElementById("fit").addEventListener("click", () => { viewSize = null; fit(); });

  // --- start ---

  document.getElementById("title").textContent = DATA.scenario;
  document.getElementById("facts").textContent = `torch ${DATA.torch_version} · ${DATA.device} · ${plural(NODES.length, "node")} · ${plural(STEPS.length, "backward step")}`;
  if (!DATA.graph) document.getElementById("facts").textContent += " · this run recorded no backward pass";
  render();
  fit();
  showIntro();
  setStep(0);
  document.body.dataset.ready = "yes";
  // For benchmarks/page_speed.py: the script is done; a frame later, the graph has been painted.
  performance.mark("trace-page-ready");
  requestAnimationFrame(() => requestAnimationFrame(() => performance.mark("trace-page-drawn")));
})();
