// The interactive dependency graph of `cargo cell deps --format html`: one box per namespace
// (applications above the kernel, the base image and the platform below), a layered layout
// inside each, in plain JS, drawn as inline SVG. Drag to pan, wheel to zoom, search by name, click a cell to
// highlight what it uses (blue) and what uses it (orange). No network, no libraries.
(function () {
  "use strict";
  var SVG = "http://www.w3.org/2000/svg";
  var data = JSON.parse(document.getElementById("graph-data").textContent);
  var svg = document.getElementById("graph");
  var viewport = document.getElementById("viewport");
  var nodes = data.nodes;
  var byId = new Map();
  var view = { x: 0, y: 0, k: 1 };
  var selected = null;

  nodes.forEach(function (n) { n.out = []; n.inc = []; byId.set(n.id, n); });
  var edges = data.edges.filter(function (e) {
    e.a = byId.get(e.from); e.b = byId.get(e.to);
    if (!e.a || !e.b) { return false; }
    e.a.out.push(e); e.b.inc.push(e);
    return true;
  });

  function el(name, attrs, parent) {
    var x = document.createElementNS(SVG, name);
    Object.keys(attrs).forEach(function (k) { x.setAttribute(k, attrs[k]); });
    if (parent) { parent.appendChild(x); }
    return x;
  }

  function bytes(n) {
    if (n < 1024) { return n + " B"; }
    if (n < 1048576) { return (n / 1024).toFixed(1) + " KiB"; }
    return (n / 1048576).toFixed(1) + " MiB";
  }

  function subtitle(n) {
    if (n.kind === "object") { return (n.dep ? "crate " : "") + (n.version ? "v" + n.version + " · " : "") + bytes(n.size); }
    return n.kind === "unresolved" ? "fails to link" : n.kind === "base" ? "base image" : n.kind;
  }

  // Groups: one per namespace, and one for the base image and the platform (the host). Deeper
  // namespaces (applications) go above their parents (the kernel), the host at the bottom; the
  // groups of one depth sit side by side. Inside a group, cells are laid out in layers.
  var HOST = "";
  var groups = new Map();
  function group(name) {
    if (!groups.has(name)) { groups.set(name, { name: name, nodes: [], depth: name === HOST ? 0 : 1 }); }
    return groups.get(name);
  }
  data.namespaces.forEach(function (ns) {
    var g = group(ns.name), parent = ns.parent !== null && groups.has(ns.parent) ? groups.get(ns.parent) : null;
    g.depth = parent ? parent.depth + 1 : 1;
  });
  nodes.forEach(function (n) {
    n.group = group(n.kind === "base" || n.kind === "platform" ? HOST : n.namespace);
    n.group.nodes.push(n);
  });

  // Layers inside group `g`: users above what they use, counting only uses within the group.
  // Back edges of a depth-first search are ignored, so a cycle still gets layers.
  function layoutGroup(g) {
    var inside = function (e) { return e.a.group === g && e.b.group === g; };
    var state = new Map(), order = [];
    function dfs(start) {
      var stack = [[start, 0]];
      state.set(start, 1);
      while (stack.length) {
        var top = stack[stack.length - 1], n = top[0];
        if (top[1] < n.out.length) {
          var e = n.out[top[1]++], m = e.b;
          if (!inside(e)) { continue; }
          if (!state.has(m)) { state.set(m, 1); stack.push([m, 0]); } else if (state.get(m) === 1) { e.back = true; }
        } else { state.set(n, 2); order.push(n); stack.pop(); }
      }
    }
    g.nodes.slice().sort(function (a, b) { return a.inc.length - b.inc.length; }).forEach(function (n) {
      if (!state.has(n)) { dfs(n); }
    });
    order.reverse(); // users before what they use
    order.forEach(function (n) { n.layer = 0; });
    order.forEach(function (n) {
      n.out.forEach(function (e) { if (inside(e) && !e.back && e.b.layer < n.layer + 1) { e.b.layer = n.layer + 1; } });
    });
    var layers = [];
    g.nodes.forEach(function (n) { (layers[n.layer] = layers[n.layer] || []).push(n); });
    layers = layers.filter(Boolean);
    layers.forEach(function (l) {
      l.sort(function (a, b) { return a.name < b.name ? -1 : a.name > b.name ? 1 : a.id - b.id; });
      l.forEach(function (n, i) { n.pos = i; });
    });
    function sweep(ls, near) {
      ls.forEach(function (l) {
        l.forEach(function (n) {
          var ns = near(n).filter(function (m) { return m.group === g; });
          n.bary = ns.length ? ns.reduce(function (s, m) { return s + m.pos; }, 0) / ns.length : n.pos;
        });
        l.sort(function (a, b) { return a.bary - b.bary; });
        l.forEach(function (n, i) { n.pos = i; });
      });
    }
    for (var i = 0; i < 4; i++) {
      sweep(layers.slice(1), function (n) { return n.inc.map(function (e) { return e.a; }); });
      sweep(layers.slice(0, -1).reverse(), function (n) { return n.out.map(function (e) { return e.b; }); });
    }
    var width = 0;
    layers.forEach(function (l, li) {
      var x = 0;
      l.forEach(function (n) {
        n.w = Math.max(60, 18 + 7.4 * n.name.length, 18 + 6.2 * subtitle(n).length);
        n.h = 34; n.x = x; x += n.w + 28;
        n.y = li * 100;
      });
      l.width = x - 28;
      width = Math.max(width, l.width);
    });
    layers.forEach(function (l) { l.forEach(function (n) { n.x += (width - l.width) / 2; }); });
    g.w = Math.max(width, 7.4 * groupLabel(g).length) + 2 * PAD;
    g.h = (layers.length - 1) * 100 + 34 + PAD + LABEL;
  }

  var PAD = 16, LABEL = 22, GAP = 48;

  function groupLabel(g) { return g.name === HOST ? "base image and platform" : "namespace " + g.name; }

  function layout() {
    var rows = [];
    groups.forEach(function (g) {
      if (!g.nodes.length) { return; }
      layoutGroup(g);
      (rows[g.depth] = rows[g.depth] || []).push(g);
    });
    rows = rows.filter(Boolean).reverse(); // the deepest namespaces on top, the host at the bottom
    var y = 0;
    rows.forEach(function (row) {
      row.sort(function (a, b) { return b.nodes.length - a.nodes.length || (a.name < b.name ? -1 : 1); });
      var width = row.reduce(function (s, g) { return s + g.w; }, 0) + GAP * (row.length - 1);
      var x = -width / 2, height = 0;
      row.forEach(function (g) {
        g.x = x; g.y = y;
        g.nodes.forEach(function (n) { n.x += x + PAD; n.y += y + LABEL; });
        x += g.w + GAP;
        height = Math.max(height, g.h);
      });
      y += height + GAP + 40;
    });
  }

  function drawGroups() {
    var gg = document.getElementById("groups");
    groups.forEach(function (g) {
      if (!g.nodes.length) { return; }
      var el0 = el("g", { "class": "ns" + (g.name === HOST ? " host" : ""), "data-ns": g.name }, gg);
      el("rect", { "class": "ns-box", x: g.x, y: g.y, width: g.w, height: g.h, rx: 10, "data-ns": g.name }, el0);
      var t = el("text", { "class": "ns-label", x: g.x + 10, y: g.y + 15 }, el0);
      t.textContent = groupLabel(g);
    });
  }

  function draw() {
    var ge = document.getElementById("edges"), gn = document.getElementById("nodes");
    edges.forEach(function (e) {
      var x1 = e.a.x + e.a.w / 2, y1 = e.a.y + e.a.h, x2 = e.b.x + e.b.w / 2, y2 = e.b.y;
      if (y2 <= y1) { y1 = e.a.y; y2 = e.b.y + e.b.h; }
      var my = (y1 + y2) / 2;
      // Compiled against it, bound to nothing in it: dashed.
      var none = e.slots === 0 && !e.symbols.length;
      e.el = el("path", { "class": "edge" + (none ? " none" : ""), d: "M" + x1 + "," + y1 + " C" + x1 + "," + my + " " + x2 + "," + my + " " + x2 + "," + y2 }, ge);
      var t = el("title", {}, e.el);
      t.textContent = e.a.name + " uses " + e.b.name + ": " + (none ? "compiled against it, no slots" : e.slots + " slots");
    });
    nodes.forEach(function (n) {
      var cls = "node kind-" + n.kind + (n.dep ? " dep" : "") + (n.retired ? " retired" : "") + (data.focus.indexOf(n.id) >= 0 ? " focus" : "");
      n.el = el("g", { "class": cls, transform: "translate(" + n.x + "," + n.y + ")", "data-id": String(n.id), "data-ns": n.group.name }, gn);
      el("rect", { width: n.w, height: n.h, rx: 6 }, n.el);
      var t = el("text", { x: 8, y: 14 }, n.el);
      t.textContent = n.name;
      var s = el("text", { x: 8, y: 28, "class": "sub" }, n.el);
      s.textContent = subtitle(n);
      var tip = el("title", {}, n.el);
      tip.textContent = n.name + (n.namespace ? " [" + n.namespace + "]" : "");
    });
  }

  function list() {
    var ul = document.getElementById("cells");
    nodes.slice().sort(function (a, b) { return a.name < b.name ? -1 : a.name > b.name ? 1 : 0; }).forEach(function (n) {
      var li = document.createElement("li");
      li.textContent = n.name + (n.version ? " " + n.version : "") + (n.namespace ? " [" + n.namespace + "]" : "");
      if (n.dep) { li.className = "dep"; }
      li.addEventListener("click", function () { select(n); center(n); });
      ul.appendChild(li);
      n.li = li;
    });
  }

  function apply() { viewport.setAttribute("transform", "translate(" + view.x + "," + view.y + ") scale(" + view.k + ")"); }

  function fit() {
    var r = svg.getBoundingClientRect(), w = r.width || 800, h = r.height || 600;
    if (!nodes.length) { apply(); return; }
    var x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
    groups.forEach(function (g) {
      if (!g.nodes.length) { return; }
      x0 = Math.min(x0, g.x); y0 = Math.min(y0, g.y); x1 = Math.max(x1, g.x + g.w); y1 = Math.max(y1, g.y + g.h);
    });
    view.k = Math.min(2, 0.92 * Math.min(w / (x1 - x0 + 1), h / (y1 - y0 + 1)));
    view.x = (w - (x1 - x0) * view.k) / 2 - x0 * view.k;
    view.y = (h - (y1 - y0) * view.k) / 2 - y0 * view.k;
    apply();
  }

  function center(n) {
    var r = svg.getBoundingClientRect();
    view.k = Math.max(view.k, 0.8);
    view.x = (r.width || 800) / 2 - (n.x + n.w / 2) * view.k;
    view.y = (r.height || 600) / 2 - (n.y + n.h / 2) * view.k;
    apply();
  }

  function clear() {
    selected = null;
    svg.classList.remove("has-sel");
    nodes.forEach(function (n) { n.el.classList.remove("sel", "uses", "usedby"); n.li.classList.remove("sel"); });
    edges.forEach(function (e) { e.el.classList.remove("e-uses", "e-usedby"); });
    document.getElementById("details").innerHTML = '<p class="hint">Click a cell to see what it uses and what uses it. Drag to pan, wheel to zoom.</p>';
  }

  function item(ul, e, other) {
    var li = document.createElement("li");
    li.textContent = other.name + " (" + e.slots + (e.slots === 1 ? " slot)" : " slots)");
    var syms = e.symbols.slice();
    if (e.more) { syms.push("+" + e.more + " more"); }
    if (syms.length) {
      var d = document.createElement("div");
      d.className = "sym";
      d.textContent = syms.join(", ");
      li.appendChild(d);
    }
    ul.appendChild(li);
  }

  function select(n) {
    clear();
    selected = n;
    svg.classList.add("has-sel");
    n.el.classList.add("sel");
    n.li.classList.add("sel");
    n.out.forEach(function (e) { e.b.el.classList.add("uses"); e.el.classList.add("e-uses"); });
    n.inc.forEach(function (e) { e.a.el.classList.add("usedby"); e.el.classList.add("e-usedby"); });
    var d = document.getElementById("details");
    d.innerHTML = "";
    var h = document.createElement("h3");
    h.textContent = n.name + (n.version ? " " + n.version : "");
    d.appendChild(h);
    var p = document.createElement("p");
    p.textContent = (n.namespace ? "namespace " + n.namespace + " · " : "") + (n.dep ? "dependency crate" : n.kind) + (n.size ? " · " + bytes(n.size) : "");
    d.appendChild(p);
    (n.notes || []).forEach(function (note) {
      var q = document.createElement("p");
      q.className = "note";
      q.textContent = note;
      d.appendChild(q);
    });
    [["Uses", n.out, "b"], ["Used by", n.inc, "a"]].forEach(function (part) {
      var t = document.createElement("strong");
      t.textContent = part[0] + " (" + part[1].length + ")";
      d.appendChild(t);
      var ul = document.createElement("ul");
      part[1].forEach(function (e) { item(ul, e, e[part[2]]); });
      d.appendChild(ul);
    });
  }

  function search(q, pick) {
    q = q.trim().toLowerCase();
    var first = null;
    svg.classList.toggle("searching", q.length > 0);
    nodes.forEach(function (n) {
      var hit = q.length > 0 && n.name.toLowerCase().indexOf(q) >= 0;
      n.el.classList.toggle("match", hit);
      n.li.classList.toggle("hidden", q.length > 0 && !hit);
      if (hit && !first) { first = n; }
    });
    if (pick && first) { search("", false); document.getElementById("search").value = ""; select(first); center(first); }
  }

  function wire() {
    var drag = null;
    svg.addEventListener("pointerdown", function (ev) {
      drag = { x: ev.clientX, y: ev.clientY, vx: view.x, vy: view.y, moved: false, target: ev.target };
      svg.setPointerCapture(ev.pointerId);
    });
    svg.addEventListener("pointermove", function (ev) {
      if (!drag) { return; }
      var dx = ev.clientX - drag.x, dy = ev.clientY - drag.y;
      if (Math.abs(dx) + Math.abs(dy) > 3) { drag.moved = true; svg.classList.add("dragging"); }
      if (drag.moved) { view.x = drag.vx + dx; view.y = drag.vy + dy; apply(); }
    });
    svg.addEventListener("pointerup", function () {
      if (drag && !drag.moved) {
        var g = drag.target.closest ? drag.target.closest(".node") : null;
        if (g) { select(byId.get(Number(g.getAttribute("data-id")))); } else { clear(); }
      }
      drag = null;
      svg.classList.remove("dragging");
    });
    svg.addEventListener("wheel", function (ev) {
      ev.preventDefault();
      var r = svg.getBoundingClientRect(), mx = ev.clientX - r.left, my = ev.clientY - r.top;
      var k = Math.min(8, Math.max(0.02, view.k * Math.exp(-ev.deltaY * 0.0015)));
      view.x = mx - (mx - view.x) * (k / view.k);
      view.y = my - (my - view.y) * (k / view.k);
      view.k = k;
      apply();
    }, { passive: false });
    var input = document.getElementById("search");
    input.addEventListener("input", function () { search(input.value, false); });
    input.addEventListener("keydown", function (ev) { if (ev.key === "Enter") { search(input.value, true); } });
    document.getElementById("fit").addEventListener("click", fit);
    document.getElementById("clear").addEventListener("click", clear);
    document.addEventListener("keydown", function (ev) { if (ev.key === "Escape") { clear(); } });
    window.addEventListener("resize", function () { if (!selected) { fit(); } });
  }

  layout();
  drawGroups();
  draw();
  list();
  wire();
  fit();
  var slots = edges.reduce(function (s, e) { return s + e.slots; }, 0);
  document.getElementById("summary").textContent = nodes.length + " cells, " + edges.length + " uses, " + slots + " slots (" + data.source + ")";
  if (data.focus.length) {
    var f = byId.get(data.focus[0]);
    if (f) { select(f); }
  }
  document.body.setAttribute("data-ready", nodes.length + " cells");
})();
