"""The inline style and script of the HTML view (no network: everything the page needs is in these strings).

The script reads ``DATA`` (see ``html_view.view_data``) and draws two views with SVG:

- head view: query tokens on the left, key tokens on the right, one line per (query, key, head) whose
  opacity is the weight; a layer menu and one check box per head (each head has its colour); hovering a
  token on the left keeps only its lines.
- model view: a grid of every layer (rows) x head (columns) as small heatmaps; a click selects that
  layer and head in the head view.
"""

STYLE = """
body { font-family: system-ui, sans-serif; margin: 16px; color: #222; }
h1 { font-size: 16px; font-weight: 600; }
.controls { margin: 8px 0; display: flex; gap: 16px; flex-wrap: wrap; align-items: center; }
.controls label { font-size: 13px; }
.head-box { display: inline-flex; align-items: center; margin-right: 6px; }
.swatch { display: inline-block; width: 10px; height: 10px; margin-right: 3px; }
.views { display: flex; gap: 32px; flex-wrap: wrap; align-items: flex-start; }
svg text { font-size: 12px; cursor: default; }
#lines { pointer-events: none; }
svg text.special { fill: #888; }
.model-cell { cursor: pointer; }
.model-cell.chosen rect.frame { stroke: #d33; stroke-width: 2; }
.caption { font-size: 12px; color: #555; }
"""

SCRIPT = r"""
(function () {
  "use strict";
  const data = JSON.parse(document.getElementById("attention-data").textContent);
  const colours = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                   "#bcbd22", "#17becf", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd"];
  const SVG = "http://www.w3.org/2000/svg";
  const state = { group: 0, layer: 0, heads: new Set(), focus: null };
  const groupMenu = document.getElementById("group");
  const layerMenu = document.getElementById("layer");
  const headBoxes = document.getElementById("heads");
  const headView = document.getElementById("head-view");
  const modelView = document.getElementById("model-view");

  function element(name, attributes, parent) {
    const node = document.createElementNS(SVG, name);
    for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, value);
    if (parent) parent.appendChild(node);
    return node;
  }

  function group() { return data.groups[state.group]; }

  function fillMenus() {
    groupMenu.innerHTML = "";
    data.groups.forEach((g, index) => groupMenu.add(new Option(g.label, String(index))));
    groupMenu.value = String(state.group);
    const g = group();
    layerMenu.innerHTML = "";
    g.layers.forEach((layer, index) => layerMenu.add(new Option("layer " + layer, String(index))));
    layerMenu.value = String(state.layer);
    headBoxes.innerHTML = "";
    g.heads.forEach((head, index) => {
      const label = document.createElement("label");
      label.className = "head-box";
      const box = document.createElement("input");
      box.type = "checkbox";
      box.id = "head-" + index;
      box.checked = state.heads.has(index);
      box.addEventListener("change", () => {
        if (box.checked) state.heads.add(index); else state.heads.delete(index);
        drawLines(); markModel();
      });
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.background = colours[index % colours.length];
      label.append(box, swatch, document.createTextNode("head " + head));
      headBoxes.appendChild(label);
    });
  }

  const layout = { rowHeight: 20, width: 420, left: 120, right: 300 };

  function drawHeads() {
    const g = group();
    headView.innerHTML = "";
    const height = layout.rowHeight * Math.max(g.queries.length, g.keys.length) + 30;
    headView.setAttribute("width", layout.width);
    headView.setAttribute("height", height);
    element("g", { id: "lines" }, headView);
    g.queries.forEach((token, q) => {
      const text = element("text", { x: layout.left - 4, y: 24 + q * layout.rowHeight, "text-anchor": "end",
                                     class: g.query_special[q] ? "special" : "" }, headView);
      text.textContent = token;
      text.addEventListener("mouseenter", () => { state.focus = q; drawLines(); });
      text.addEventListener("mouseleave", () => { state.focus = null; drawLines(); });
    });
    g.keys.forEach((token, k) => {
      const text = element("text", { x: layout.right + 4, y: 24 + k * layout.rowHeight,
                                     class: g.key_special[k] ? "special" : "" }, headView);
      text.textContent = token;
    });
    drawLines();
  }

  function drawLines() {
    const lines = document.getElementById("lines");
    lines.innerHTML = "";
    const weights = group().weights[state.layer];
    const step = layout.rowHeight;
    for (const head of [...state.heads].sort((a, b) => a - b)) {
      weights[head].forEach((row, q) => {
        if (state.focus !== null && state.focus !== q) return;
        row.forEach((weight, k) => {
          if (weight < 0.005) return;
          element("line", { x1: layout.left + 4, y1: 20 + q * step, x2: layout.right - 4, y2: 20 + k * step,
                            stroke: colours[head % colours.length], "stroke-width": 2,
                            "stroke-opacity": weight.toFixed(3), "data-query": q, "data-key": k,
                            "data-head": head }, lines);
        });
      });
    }
  }

  function drawModel() {
    const g = group();
    modelView.innerHTML = "";
    const cell = Math.max(2, Math.min(6, Math.floor(90 / Math.max(g.queries.length, g.keys.length))));
    const boxW = cell * g.keys.length, boxH = cell * g.queries.length, gap = 16;
    modelView.setAttribute("width", 40 + g.heads.length * (boxW + gap));
    modelView.setAttribute("height", 30 + g.layers.length * (boxH + gap));
    g.heads.forEach((head, h) => {
      const t = element("text", { x: 40 + h * (boxW + gap), y: 14 }, modelView);
      t.textContent = "head " + head;
    });
    g.layers.forEach((layer, l) => {
      const t = element("text", { x: 0, y: 24 + l * (boxH + gap) + boxH / 2 }, modelView);
      t.textContent = "L" + layer;
      g.heads.forEach((head, h) => {
        const shift = "translate(" + (40 + h * (boxW + gap)) + "," + (20 + l * (boxH + gap)) + ")";
        const box = element("g", { class: "model-cell", "data-layer": l, "data-head": h, transform: shift },
                            modelView);
        element("rect", { x: 0, y: 0, width: boxW, height: boxH, fill: "#fff" }, box);  // catches clicks
        g.weights[l][h].forEach((row, q) => row.forEach((weight, k) => {
          if (weight < 0.01) return;
          element("rect", { x: k * cell, y: q * cell, width: cell, height: cell,
                            fill: colours[h % colours.length], "fill-opacity": weight.toFixed(3) }, box);
        }));
        element("rect", { class: "frame", x: 0, y: 0, width: boxW, height: boxH, fill: "none", stroke: "#bbb" }, box);
        box.addEventListener("click", () => {
          state.layer = l; state.heads = new Set([h]);
          fillMenus(); drawHeads(); markModel();
        });
      });
    });
    markModel();
  }

  function markModel() {
    for (const box of modelView.querySelectorAll(".model-cell")) {
      const chosen = Number(box.dataset.layer) === state.layer && state.heads.has(Number(box.dataset.head));
      box.classList.toggle("chosen", chosen);
    }
  }

  function chooseGroup(index) {
    state.group = index; state.layer = 0; state.focus = null;
    state.heads = new Set(group().heads.map((_, h) => h));
    fillMenus(); drawHeads(); drawModel();
  }

  groupMenu.addEventListener("change", () => chooseGroup(Number(groupMenu.value)));
  layerMenu.addEventListener("change", () => { state.layer = Number(layerMenu.value); drawLines(); markModel(); });
  chooseGroup(0);
})();
"""
