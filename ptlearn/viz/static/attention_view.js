/* ptlearn attention view: layer and head selectors, token hover, a heatmap. No external scripts.
 *
 * ptlearn.viz.export inlines this file after replacing the argument at the bottom with
 * {"root_id": ..., "data": attention_view_data(...)}; data.attention is [layer][head][query][key].
 * Tokens are inserted as text nodes, never as HTML.
 */
(function (params) {
  "use strict";
  var SVG_NS = "http://www.w3.org/2000/svg";
  var ROW = 18, TOKEN_W = 130, GAP = 170, PAD = 8, MIN_LINE = 0.01;
  var data = params.data, tq = data.tokens, tk = data.tokens_k;
  var root = document.getElementById(params.root_id);
  var state = { layer: 0, head: 0, hover: null };  // head -1 = mean over heads

  function make(tag, attrs, parent, text) {
    var node = tag.indexOf("svg:") === 0
      ? document.createElementNS(SVG_NS, tag.slice(4)) : document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (text !== undefined) node.appendChild(document.createTextNode(text));
    if (parent) parent.appendChild(node);
    return node;
  }

  function options(select, labels, values) {
    labels.forEach(function (label, i) { make("option", { value: values[i] }, select, label); });
  }

  function range(n) { var r = []; for (var i = 0; i < n; i++) r.push(i); return r; }

  // viridis, 5 stops, linearly interpolated: 0 = dark purple, 1 = yellow
  var STOPS = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
  function viridis(t) {
    var x = Math.max(0, Math.min(1, t)) * (STOPS.length - 1), i = Math.min(Math.floor(x), STOPS.length - 2);
    var f = x - i, a = STOPS[i], b = STOPS[i + 1];
    return "rgb(" + [0, 1, 2].map(function (c) { return Math.round(a[c] + f * (b[c] - a[c])); }).join(",") + ")";
  }

  function currentMatrix() {
    var heads = data.attention[state.layer];
    if (state.head >= 0) return heads[state.head];
    return tq.map(function (_, i) {
      return tk.map(function (_, j) {
        var sum = 0;
        heads.forEach(function (h) { sum += h[i][j]; });
        return sum / heads.length;
      });
    });
  }

  // ---- layout: title, selectors, line view (SVG) and heatmap (canvas) side by side ----
  root.style.fontFamily = "Helvetica, Arial, sans-serif";
  make("h3", {}, root, data.title);
  var bar = make("div", { style: "margin-bottom:6px" }, root);
  make("span", {}, bar, "Layer ");
  var layerSelect = make("select", { "class": "ptlearn-layer" }, bar);
  options(layerSelect, range(data.n_layers).map(String), range(data.n_layers));
  make("span", {}, bar, "  Head ");
  var headSelect = make("select", { "class": "ptlearn-head" }, bar);
  options(headSelect, ["mean"].concat(range(data.n_heads).map(String)), [-1].concat(range(data.n_heads)));
  headSelect.value = "0";
  make("div", { style: "font-size:12px;color:#555" }, root,
    "Hover a token: left = queries (attend from), right = keys (attend to). Line opacity = weight.");
  var row = make("div", { style: "display:flex;gap:24px;align-items:flex-start" }, root);

  var height = PAD * 2 + ROW * Math.max(tq.length, tk.length);
  var svg = make("svg:svg", { width: 2 * TOKEN_W + GAP, height: height, "class": "ptlearn-lines-view" }, row);
  var lines = make("svg:g", { "class": "ptlearn-lines" }, svg);

  function tokenColumn(tokens, side) {
    return tokens.map(function (tok, i) {
      var y = PAD + ROW * i, x0 = side === "q" ? 0 : TOKEN_W + GAP;
      var g = make("svg:g", { "class": "ptlearn-token-" + side, "data-index": i }, svg);
      var box = make("svg:rect", { x: x0, y: y, width: TOKEN_W, height: ROW - 2, fill: "#ff7f0e", "fill-opacity": 0 }, g);
      make("svg:text", {
        x: side === "q" ? TOKEN_W - 4 : x0 + 4, y: y + ROW - 6, "font-size": 13,
        "text-anchor": side === "q" ? "end" : "start"
      }, g, tok);
      g.addEventListener("mouseenter", function () { state.hover = { side: side, index: i }; render(); });
      g.addEventListener("mouseleave", function () { state.hover = null; render(); });
      return box;
    });
  }
  var boxesQ = tokenColumn(tq, "q"), boxesK = tokenColumn(tk, "k");

  var cell = Math.max(2, Math.min(40, Math.floor(420 / Math.max(tq.length, tk.length))));
  var heat = make("div", {}, row);
  var canvas = make("canvas", { width: cell * tk.length, height: cell * tq.length, "class": "ptlearn-heatmap" }, heat);
  make("div", { style: "font-size:12px;color:#555" }, heat, "rows: queries, columns: keys");

  // ---- drawing ----
  function drawLines(m) {
    while (lines.firstChild) lines.removeChild(lines.firstChild);
    var h = state.hover, count = 0;
    tq.forEach(function (_, i) {
      tk.forEach(function (_, j) {
        var w = m[i][j];
        var shown = h === null ? w >= MIN_LINE : (h.side === "q" ? h.index === i : h.index === j) && w > 0;
        if (!shown) return;
        make("svg:line", {
          x1: TOKEN_W, y1: PAD + ROW * i + ROW / 2 - 1, x2: TOKEN_W + GAP, y2: PAD + ROW * j + ROW / 2 - 1,
          stroke: "#1f77b4", "stroke-width": 2, "stroke-opacity": Math.min(1, w)
        }, lines);
        count++;
      });
    });
    root.setAttribute("data-lines", count);
  }

  function shadeTokens(m) {
    var h = state.hover;
    boxesQ.concat(boxesK).forEach(function (b) { b.setAttribute("fill-opacity", 0); });
    if (h === null) return;
    var weights = h.side === "q" ? m[h.index] : m.map(function (r) { return r[h.index]; });
    var top = Math.max.apply(null, weights) || 1;
    var other = h.side === "q" ? boxesK : boxesQ;
    weights.forEach(function (w, k) { other[k].setAttribute("fill-opacity", 0.8 * w / top); });
    (h.side === "q" ? boxesQ : boxesK)[h.index].setAttribute("fill-opacity", 0.3);
  }

  function drawHeatmap(m) {
    var ctx = canvas.getContext("2d"), top = 0;
    m.forEach(function (r) { r.forEach(function (w) { top = Math.max(top, w); }); });
    m.forEach(function (r, i) {
      r.forEach(function (w, j) {
        ctx.fillStyle = viridis(w / (top || 1));
        ctx.fillRect(j * cell, i * cell, cell, cell);
      });
    });
    var h = state.hover;
    if (h !== null) {
      ctx.strokeStyle = "red";
      ctx.lineWidth = 2;
      if (h.side === "q") ctx.strokeRect(1, h.index * cell, canvas.width - 2, cell);
      else ctx.strokeRect(h.index * cell, 1, cell, canvas.height - 2);
    }
  }

  function render() {
    var m = currentMatrix();
    drawLines(m);
    shadeTokens(m);
    drawHeatmap(m);
    root.setAttribute("data-layer", state.layer);
    root.setAttribute("data-head", state.head);
  }

  canvas.addEventListener("mousemove", function (e) {
    var rect = canvas.getBoundingClientRect();
    var i = Math.floor((e.clientY - rect.top) / cell), j = Math.floor((e.clientX - rect.left) / cell);
    if (i >= 0 && i < tq.length && j >= 0 && j < tk.length) {
      canvas.title = tq[i] + " \u2192 " + tk[j] + ": " + currentMatrix()[i][j].toFixed(3);
    }
  });
  layerSelect.addEventListener("change", function () { state.layer = +layerSelect.value; render(); });
  headSelect.addEventListener("change", function () { state.head = +headSelect.value; render(); });
  render();
})(PTLEARN_PARAMS);
