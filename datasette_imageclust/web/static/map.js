/* datasette-imageclust map: every image at its layout cell, drawn from sprite atlases.
 *
 * WebGL (2, or 1 with ANGLE_instanced_arrays): one instanced quad per image, one draw
 * call per atlas sheet. The small atlas level is loaded whole for the overview; sheets
 * of larger levels are fetched when their region is on screen and zoomed in enough
 * (least-recently-used ones are dropped). Canvas2D fallback without WebGL.
 * No dependencies, no build step. Labels are drawn on a 2-D canvas and the tooltip
 * uses textContent: nothing from the database is ever parsed as HTML.
 */
(function () {
  "use strict";
  var cfg = JSON.parse(document.getElementById("icm-config").textContent);
  var box = document.getElementById("icm-map");
  var glCanvas = document.getElementById("icm-gl");
  var overlay = document.getElementById("icm-overlay");
  var octx = overlay.getContext("2d");
  var tip = document.getElementById("icm-tip");
  var tipImg = document.getElementById("icm-tip-img");
  var tipText = document.getElementById("icm-tip-text");
  var statusEl = document.getElementById("icm-status");
  var countEl = document.getElementById("icm-count");
  var modeSel = document.getElementById("icm-mode");
  var labelsBox = document.getElementById("icm-labels");
  var MODES = { none: 0, outline: 1, tint: 2, color: 3 };
  var NO_CELL = 0xffffffff;
  var MAX_DETAIL_TEXTURES = 12;
  var MAX_LOADS = 4;

  var api = { renderer: null, count: 0, frames: 0, painted: null, view: null };
  window.__imageclustMap = api;

  function painted() {
    if (window.__imageclustPainted) return;
    window.__imageclustPainted = performance.now();
    api.painted = window.__imageclustPainted;
    window.dispatchEvent(new CustomEvent("imageclust:painted"));
  }
  function setStatus(text) { statusEl.textContent = text; }

  if (!cfg.layout || !cfg.points || !cfg.points.count) {
    setStatus(cfg.message || "nothing to show");
    painted();
    return;
  }

  // ---- state ----------------------------------------------------------------------
  var N = 0, X, Y, ID, CL, AI;            // points, in atlas order
  var levels = cfg.atlas.levels || [];    // ascending cell size
  var clusters = cfg.clusters || [];
  var colors;                             // Uint8Array rgba per cluster index
  var CAT = null, catColors = null;       // colour by a column: category per point, rgba per category
  var SEL = null, nSel = 0;               // selection: 1 per selected point (mapselect.js sets it)
  var view = { cx: 0, cy: 0, s: 1, w: 1, h: 1, dpr: 1 };
  api.view = view;
  var mode = MODES[modeSel.value] || 1;
  var hovered = -1;
  var renderer = null;
  var sheets = [];                        // sheets[li][sheet] = {url, width, height, state, ...}
  var ranges = [];                        // ranges[li] = [{sheet, start, end, x0, y0, x1, y1}]
  var uncelled = null;                    // {start, end} of points without an atlas cell
  var grid = null;                        // Map cell key -> point index, for hover picking
  var loading = 0, queue = [], useClock = 0;

  function hsl(h, s, l) {
    var a = s * Math.min(l, 1 - l);
    function f(n) { var k = (n + h * 12) % 12; return l - a * Math.max(-1, Math.min(k - 3, 9 - k, 1)); }
    return [Math.round(f(0) * 255), Math.round(f(8) * 255), Math.round(f(4) * 255)];
  }
  function clusterColors() {
    var c = new Uint8Array(Math.max(1, clusters.length) * 4);
    for (var k = 0; k < clusters.length; k++) {
      var rgb = clusters[k].kind === "cluster" ? hsl((k * 0.618033988749895) % 1, 0.75, 0.58) : [150, 150, 150];
      c[k * 4] = rgb[0]; c[k * 4 + 1] = rgb[1]; c[k * 4 + 2] = rgb[2];
      c[k * 4 + 3] = clusters[k].kind === "cluster" ? 255 : 0;
    }
    return c;
  }

  // The colour of point i: its category when colouring by a column, else its cluster's.
  function colourIndex(i) { return CAT ? CAT[i] : CL[i]; }
  function palette() { return CAT ? catColors : colors; }

  function parsePoints(buf) {
    var dv = new DataView(buf);
    var magic = String.fromCharCode(dv.getUint8(0), dv.getUint8(1), dv.getUint8(2), dv.getUint8(3));
    if (magic !== "ICM1") throw new Error("unexpected points format");
    N = dv.getUint32(4, true);
    var o = 16;
    X = new Float32Array(buf, o, N); o += 4 * N;
    Y = new Float32Array(buf, o, N); o += 4 * N;
    ID = new Uint32Array(buf, o, N); o += 4 * N;
    CL = new Int32Array(buf, o, N); o += 4 * N;
    AI = new Uint32Array(buf, o, N);
    api.count = N;
  }

  function buildRanges() {
    var nCelled = N;
    while (nCelled > 0 && AI[nCelled - 1] === NO_CELL) nCelled--;
    uncelled = nCelled < N ? { start: nCelled, end: N } : null;
    for (var li = 0; li < levels.length; li++) {
      var lv = levels[li], list = [], byNo = {};
      sheets[li] = [];
      for (var s = 0; s < lv.sheets.length; s++) {
        var sh = lv.sheets[s];
        byNo[sh.sheet] = sheets[li][s] = { url: sh.url, width: sh.width, height: sh.height, no: sh.sheet,
          level: lv.level, perRow: lv.per_row, perSheet: lv.per_sheet, state: 0, tex: null, bitmap: null, used: 0,
          prefetch: li === 0 ? prefetched[sh.url] || null : null };
      }
      var i = 0;
      while (i < nCelled) {
        var no = Math.floor(AI[i] / lv.per_sheet), start = i;
        var x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
        while (i < nCelled && Math.floor(AI[i] / lv.per_sheet) === no) {
          if (X[i] < x0) x0 = X[i]; if (X[i] > x1) x1 = X[i];
          if (Y[i] < y0) y0 = Y[i]; if (Y[i] > y1) y1 = Y[i];
          i++;
        }
        list.push({ sheet: byNo[no] || null, start: start, end: i, x0: x0 - 0.5, y0: y0 - 0.5, x1: x1 + 0.5, y1: y1 + 0.5 });
      }
      ranges[li] = list;
    }
  }

  function buildGrid() {
    grid = new Map();
    for (var i = 0; i < N; i++) grid.set(key(Math.round(X[i]), Math.round(Y[i])), i);
  }
  function key(ix, iy) { return (ix + 1048576) * 2097152 + (iy + 1048576); }

  // ---- view -------------------------------------------------------------------------
  function fit() {
    var b = cfg.bounds || [0, 0, 0, 0];
    var bw = b[2] - b[0] + 2, bh = b[3] - b[1] + 2;
    view.cx = (b[0] + b[2]) / 2; view.cy = (b[1] + b[3]) / 2;
    view.s = Math.min(view.w / bw, view.h / bh);
    view.fitS = view.s;
    requestDraw();
  }
  function clampScale(s) { return Math.max((view.fitS || 1) * 0.3, Math.min(600, s)); }
  function zoomAt(px, py, factor) {
    var wx = view.cx + (px - view.w / 2) / view.s, wy = view.cy + (py - view.h / 2) / view.s;
    view.s = clampScale(view.s * factor);
    view.cx = wx - (px - view.w / 2) / view.s; view.cy = wy - (py - view.h / 2) / view.s;
    requestDraw();
  }
  function toWorld(px, py) { return [view.cx + (px - view.w / 2) / view.s, view.cy + (py - view.h / 2) / view.s]; }
  function toScreen(x, y) { return [(x - view.cx) * view.s + view.w / 2, (y - view.cy) * view.s + view.h / 2]; }
  function visible(r) {
    var hw = view.w / 2 / view.s, hh = view.h / 2 / view.s;
    return !(r.x1 < view.cx - hw || r.x0 > view.cx + hw || r.y1 < view.cy - hh || r.y0 > view.cy + hh);
  }
  function resize() {
    var r = box.getBoundingClientRect();
    view.dpr = window.devicePixelRatio || 1;
    var oldW = view.w;
    view.w = Math.max(1, r.width); view.h = Math.max(1, r.height);
    [glCanvas, overlay].forEach(function (c) {
      c.width = Math.round(view.w * view.dpr); c.height = Math.round(view.h * view.dpr);
    });
    if (view.fitS && oldW > 1) view.fitS *= view.w / oldW;
    requestDraw();
  }
  function pick(px, py) {
    if (!grid) return -1;
    var w = toWorld(px, py), i = grid.get(key(Math.round(w[0]), Math.round(w[1])));
    if (i === undefined) return -1;
    return (Math.abs(X[i] - w[0]) <= 0.5 && Math.abs(Y[i] - w[1]) <= 0.5) ? i : -1;
  }

  // ---- sheets -----------------------------------------------------------------------
  function levelFor() {
    var px = view.s * view.dpr;
    for (var li = 0; li < levels.length; li++) if (levels[li].level * 1.25 >= px) return li;
    return levels.length - 1;
  }
  function fetchBitmap(url) {
    return fetch(url).then(function (r) {
      if (!r.ok) throw new Error("HTTP " + r.status);
      return r.blob();
    }).then(function (blob) {
      return window.createImageBitmap ? createImageBitmap(blob) : new Promise(function (ok, bad) {
        var img = new Image(); img.onload = function () { ok(img); }; img.onerror = bad; img.src = URL.createObjectURL(blob);
      });
    });
  }
  function load(sheet, first) {
    if (sheet.state !== 0) return sheet.promise;
    if (!first && loading >= MAX_LOADS) { if (queue.indexOf(sheet) < 0) queue.push(sheet); return; }
    sheet.state = 1;
    loading++;
    var pending = sheet.prefetch || fetchBitmap(sheet.url);
    sheet.prefetch = null;
    sheet.promise = pending.then(function (bitmap) {
      renderer.upload(sheet, bitmap);
      sheet.state = 2; sheet.used = ++useClock;
    }, function (err) {
      sheet.state = 3; setStatus("could not load an atlas sheet: " + err.message);
    }).then(function () {
      loading--;
      while (queue.length && loading < MAX_LOADS) { var q = queue.shift(); if (q.state === 0 && q.wanted) load(q); }
      requestDraw();
    });
    return sheet.promise;
  }
  function evict(li, inView) {
    // Keep what is in view (a high-DPI screen can show more sheets than the cap) plus a few.
    var cap = Math.max(MAX_DETAIL_TEXTURES, inView + 4);
    var loaded = sheets[li].filter(function (s) { return s.state === 2; });
    if (loaded.length <= cap) return;
    loaded.sort(function (a, b) { return a.used - b.used; });
    for (var k = 0; k < loaded.length - cap; k++) { renderer.drop(loaded[k]); loaded[k].state = 0; }
  }
  function fallbackRanges(start, end, li, out) {
    // The points [start, end) drawn from the best loaded level below li.
    for (var f = li - 1; f >= 0; f--) {
      var rs = ranges[f], ok = true, parts = [];
      for (var k = 0; k < rs.length; k++) {
        var r = rs[k];
        if (r.end <= start || r.start >= end) continue;
        if (!r.sheet || r.sheet.state !== 2) { ok = false; break; }
        parts.push([Math.max(r.start, start), Math.min(r.end, end), r.sheet]);
      }
      if (ok) { for (var p = 0; p < parts.length; p++) out.push(parts[p]); return; }
    }
    out.push([start, end, null]);
  }
  function plan() {
    // What to draw this frame: [start, end, sheet|null] triples.
    var out = [], li = levelFor();
    var want = [], inView = 0;
    ranges[li].forEach(function (r) {
      if (li > 0 && !visible(r)) return;
      inView++;
      if (r.sheet && r.sheet.state === 2) { r.sheet.used = ++useClock; out.push([r.start, r.end, r.sheet]); return; }
      if (r.sheet && r.sheet.state === 0) want.push(r.sheet);
      fallbackRanges(r.start, r.end, li, out);
    });
    sheets[li].forEach(function (s) { s.wanted = false; });
    want.forEach(function (s) { s.wanted = true; load(s); });
    if (li > 0) evict(li, inView);
    if (uncelled) out.push([uncelled.start, uncelled.end, null]);
    if (li === levels.length - 1 && view.s * view.dpr > levels[li].level * 1.5) planThumbs(li, out);
    return out;
  }

  // Deepest zoom: whole stored thumbnails (sharper than the largest atlas cell) for the
  // images in view, each its own texture, drawn over their cells.
  var thumbs = new Map(), thumbLoads = 0, MAX_THUMBS = 300, MAX_THUMBS_IN_VIEW = 120;
  function planThumbs(li, out) {
    if (!cfg.urls.thumb) return;  // thumbnails the viewer may not see: atlas cells only
    var hw = view.w / 2 / view.s + 0.5, hh = view.h / 2 / view.s + 0.5, seen = 0;
    var rs = ranges[li];
    for (var k = 0; k < rs.length && seen <= MAX_THUMBS_IN_VIEW; k++) {
      if (!visible(rs[k])) continue;
      for (var i = rs[k].start; i < rs[k].end; i++) {
        if (Math.abs(X[i] - view.cx) > hw || Math.abs(Y[i] - view.cy) > hh) continue;
        if (++seen > MAX_THUMBS_IN_VIEW) break;
        var t = thumbs.get(ID[i]);
        if (!t) { t = { thumb: true, state: 0, tex: null, bitmap: null, used: 0, width: 0, height: 0 }; thumbs.set(ID[i], t); }
        t.used = ++useClock;
        if (t.state === 2) out.push([i, i + 1, t]);
        else if (t.state === 0 && thumbLoads < 6) loadThumb(ID[i], t);
      }
    }
    if (seen > MAX_THUMBS_IN_VIEW) return;
    api.thumbsLoaded = 0;
    thumbs.forEach(function (t) { if (t.state === 2) api.thumbsLoaded++; });
    if (thumbs.size > MAX_THUMBS) {
      var all = Array.from(thumbs.entries()).sort(function (a, b) { return a[1].used - b[1].used; });
      for (var j = 0; j < all.length - MAX_THUMBS; j++) {
        if (all[j][1].state === 1) continue;
        renderer.drop(all[j][1]); thumbs.delete(all[j][0]);
      }
    }
  }
  function loadThumb(id, t) {
    t.state = 1; thumbLoads++;
    fetchBitmap(cfg.urls.thumb + id).then(function (bitmap) {
      if (thumbs.get(id) !== t) { if (bitmap.close) bitmap.close(); return; }
      renderer.upload(t, bitmap); t.state = 2;
    }, function () { t.state = 3; }).then(function () { thumbLoads--; requestDraw(); });
  }

  // ---- WebGL renderer ----------------------------------------------------------------
  // Two programs over the same per-image data: quads (2 triangles an image) when
  // thumbnails are large on screen, and point sprites (1 vertex an image, 6x less vertex
  // work: what matters on software WebGL) when they are small.
  var VS_QUAD = [
    "attribute vec2 a_corner; attribute vec2 a_pos; attribute float a_ai; attribute vec4 a_color; attribute float a_sel;",
    "uniform vec2 u_center; uniform float u_scale; uniform vec2 u_half; uniform float u_size;",
    "uniform float u_start; uniform float u_perRow;",
    "varying vec2 v_cell; varying vec4 v_color; varying vec2 v_local; varying float v_sel;",
    "void main() {",
    "  v_sel = a_sel;",
    "  vec2 w = a_pos + (a_corner - 0.5) * u_size;",
    "  vec2 p = (w - u_center) * u_scale / u_half;",
    "  gl_Position = vec4(p.x, -p.y, 0.0, 1.0);",
    "  float c = a_ai - u_start;",
    "  float row = floor((c + 0.5) / u_perRow);",
    "  v_cell = vec2(c - row * u_perRow, row);",
    "  v_color = a_color; v_local = a_corner;",
    "}"].join("\n");
  var VS_POINT = [
    "attribute vec2 a_pos; attribute float a_ai; attribute vec4 a_color; attribute float a_sel;",
    "uniform vec2 u_center; uniform float u_scale; uniform vec2 u_half; uniform float u_px;",
    "uniform float u_start; uniform float u_perRow;",
    "varying vec2 v_cell; varying vec4 v_color; varying float v_sel;",
    "void main() {",
    "  v_sel = a_sel;",
    "  vec2 p = (a_pos - u_center) * u_scale / u_half;",
    "  gl_Position = vec4(p.x, -p.y, 0.0, 1.0);",
    "  gl_PointSize = u_px;",
    "  float c = a_ai - u_start;",
    "  float row = floor((c + 0.5) / u_perRow);",
    "  v_cell = vec2(c - row * u_perRow, row);",
    "  v_color = a_color;",
    "}"].join("\n");
  function fragment(points) {
    return [
      "#ifdef GL_FRAGMENT_PRECISION_HIGH\nprecision highp float;\n#else\nprecision mediump float;\n#endif",
      "uniform sampler2D u_tex; uniform float u_mode; uniform float u_border; uniform float u_hasTex;",
      "uniform vec2 u_cellUV; uniform float u_inset; uniform vec2 u_uv0; uniform float u_hasSel;",
      "varying vec2 v_cell; varying vec4 v_color; varying float v_sel;" + (points ? "" : " varying vec2 v_local;"),
      "void main() {",
      points ? "  vec2 local = gl_PointCoord;" : "  vec2 local = v_local;",
      "  vec2 uv = u_uv0 + (v_cell + mix(vec2(u_inset), vec2(1.0 - u_inset), local)) * u_cellUV;",
      "  vec3 t = u_hasTex > 0.5 ? texture2D(u_tex, uv).rgb : mix(vec3(0.35), v_color.rgb, v_color.a * 0.7);",
      "  vec2 d = min(local, 1.0 - local);",
      "  vec3 c = t;",
      "  if (u_mode > 2.5) c = v_color.a > 0.5 ? v_color.rgb : vec3(0.45);",
      "  else if (u_mode > 1.5) c = mix(t, v_color.rgb, 0.45 * v_color.a);",
      "  else if (u_mode > 0.5 && v_color.a > 0.5 && min(d.x, d.y) < u_border) c = v_color.rgb;",
      // A selection: the rest dimmed towards the background, the selected framed in yellow.
      "  if (u_hasSel > 0.5) {",
      "    if (v_sel < 0.5) c = mix(c, vec3(0.114, 0.122, 0.129), 0.8);",
      "    else if (min(d.x, d.y) < u_border * 1.5) c = vec3(1.0, 0.84, 0.0);",
      "  }",
      "  gl_FragColor = vec4(c, 1.0);",
      "}"].join("\n");
  }
  var UNIFORMS = ["u_center", "u_scale", "u_half", "u_size", "u_px", "u_start", "u_perRow", "u_cellUV", "u_inset",
                  "u_uv0", "u_tex", "u_mode", "u_border", "u_hasTex", "u_hasSel"];

  function makeGL(canvas) {
    var opts = { antialias: false, alpha: false, depth: false, stencil: false, premultipliedAlpha: false };
    var gl = canvas.getContext("webgl2", opts), kind = "webgl2";
    if (!gl) {
      gl = canvas.getContext("webgl", opts) || canvas.getContext("experimental-webgl", opts);
      if (!gl) return null;
      kind = "webgl";
    }
    function shader(type, src) {
      var s = gl.createShader(type); gl.shaderSource(s, src); gl.compileShader(s);
      if (!gl.getShaderParameter(s, gl.COMPILE_STATUS)) throw new Error(gl.getShaderInfoLog(s));
      return s;
    }
    function program(vs, fs, attrs) {
      var prog = gl.createProgram();
      gl.attachShader(prog, shader(gl.VERTEX_SHADER, vs));
      gl.attachShader(prog, shader(gl.FRAGMENT_SHADER, fs));
      gl.linkProgram(prog);
      if (!gl.getProgramParameter(prog, gl.LINK_STATUS)) throw new Error(gl.getProgramInfoLog(prog));
      var P = { prog: prog, loc: {}, uni: {}, attrs: attrs };
      attrs.forEach(function (n) { P.loc[n] = gl.getAttribLocation(prog, n); });
      UNIFORMS.forEach(function (n) { P.uni[n] = gl.getUniformLocation(prog, n); });
      return P;
    }
    var quads = program(VS_QUAD, fragment(false), ["a_pos", "a_ai", "a_color", "a_corner", "a_sel"]);
    var points = program(VS_POINT, fragment(true), ["a_pos", "a_ai", "a_color", "a_sel"]);
    var maxPoint = (gl.getParameter(gl.ALIASED_POINT_SIZE_RANGE) || [1, 1])[1];
    // Quads: 6 vertices of 20 bytes an image (x, y, atlas index as float32; rgba and the
    // corner and the selection flag as bytes). Plain triangles, not instancing: software
    // WebGL (SwiftShader) runs instanced draws about as slowly as one draw call per instance.
    // Points: 1 vertex of 20 bytes an image.
    var qbuf = gl.createBuffer(), pbuf = gl.createBuffer();
    var CORNERS = [0, 0, 1, 0, 0, 1, 0, 1, 1, 0, 1, 1];
    function setInstances() {
      var V = 6, QS = 20, PS = 20, pal = palette();
      var qb = new ArrayBuffer(N * V * QS), qf = new Float32Array(qb), qu = new Uint8Array(qb);
      var pb = new ArrayBuffer(N * PS), pf = new Float32Array(pb), pu = new Uint8Array(pb);
      for (var i = 0; i < N; i++) {
        var c = colourIndex(i), r = 120, g = 120, bl = 120, al = 0, sel = SEL && SEL[i] ? 255 : 0;
        if (c >= 0) { r = pal[c * 4]; g = pal[c * 4 + 1]; bl = pal[c * 4 + 2]; al = pal[c * 4 + 3]; }
        var ai = AI[i] === NO_CELL ? 0 : AI[i];
        pf[i * 5] = X[i]; pf[i * 5 + 1] = Y[i]; pf[i * 5 + 2] = ai;
        pu[i * PS + 12] = r; pu[i * PS + 13] = g; pu[i * PS + 14] = bl; pu[i * PS + 15] = al; pu[i * PS + 16] = sel;
        for (var v = 0; v < V; v++) {
          var o = (i * V + v) * QS;
          qf[o / 4] = X[i]; qf[o / 4 + 1] = Y[i]; qf[o / 4 + 2] = ai;
          qu[o + 12] = r; qu[o + 13] = g; qu[o + 14] = bl; qu[o + 15] = al;
          qu[o + 16] = CORNERS[v * 2]; qu[o + 17] = CORNERS[v * 2 + 1]; qu[o + 18] = sel;
        }
      }
      gl.bindBuffer(gl.ARRAY_BUFFER, qbuf);
      gl.bufferData(gl.ARRAY_BUFFER, qb, gl.STATIC_DRAW);
      gl.bindBuffer(gl.ARRAY_BUFFER, pbuf);
      gl.bufferData(gl.ARRAY_BUFFER, pb, gl.STATIC_DRAW);
    }
    var current = null;
    function use(P) {
      if (current === P) return;
      if (current) current.attrs.forEach(function (n) { if (current.loc[n] >= 0) gl.disableVertexAttribArray(current.loc[n]); });
      gl.useProgram(P.prog);
      var L = P.loc;
      P.attrs.forEach(function (n) { if (L[n] >= 0) gl.enableVertexAttribArray(L[n]); });
      if (P === quads) {
        gl.bindBuffer(gl.ARRAY_BUFFER, qbuf);
        gl.vertexAttribPointer(L.a_pos, 2, gl.FLOAT, false, 20, 0);
        gl.vertexAttribPointer(L.a_ai, 1, gl.FLOAT, false, 20, 8);
        gl.vertexAttribPointer(L.a_color, 4, gl.UNSIGNED_BYTE, true, 20, 12);
        gl.vertexAttribPointer(L.a_corner, 2, gl.UNSIGNED_BYTE, false, 20, 16);
        gl.vertexAttribPointer(L.a_sel, 1, gl.UNSIGNED_BYTE, true, 20, 18);
      } else {
        gl.bindBuffer(gl.ARRAY_BUFFER, pbuf);
        gl.vertexAttribPointer(L.a_pos, 2, gl.FLOAT, false, 20, 0);
        gl.vertexAttribPointer(L.a_ai, 1, gl.FLOAT, false, 20, 8);
        gl.vertexAttribPointer(L.a_color, 4, gl.UNSIGNED_BYTE, true, 20, 12);
        gl.vertexAttribPointer(L.a_sel, 1, gl.UNSIGNED_BYTE, true, 20, 16);
      }
      current = P;
    }
    function pot(v) { return (v & (v - 1)) === 0; }
    return {
      kind: kind,
      setInstances: setInstances,
      upload: function (sheet, bitmap) {
        var tex = gl.createTexture();
        gl.bindTexture(gl.TEXTURE_2D, tex);
        gl.pixelStorei(gl.UNPACK_FLIP_Y_WEBGL, false);
        gl.texImage2D(gl.TEXTURE_2D, 0, gl.RGBA, gl.RGBA, gl.UNSIGNED_BYTE, bitmap);
        var mip = kind === "webgl2" || (pot(bitmap.width) && pot(bitmap.height));
        if (mip) gl.generateMipmap(gl.TEXTURE_2D);
        gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MIN_FILTER, mip ? gl.LINEAR_MIPMAP_LINEAR : gl.LINEAR);
        gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MAG_FILTER, gl.LINEAR);
        gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_WRAP_S, gl.CLAMP_TO_EDGE);
        gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_WRAP_T, gl.CLAMP_TO_EDGE);
        sheet.width = sheet.width || bitmap.width; sheet.height = sheet.height || bitmap.height;
        if (bitmap.close) bitmap.close();
        sheet.tex = tex;
      },
      drop: function (sheet) { if (sheet.tex) gl.deleteTexture(sheet.tex); sheet.tex = null; },
      draw: function (parts) {
        gl.viewport(0, 0, glCanvas.width, glCanvas.height);
        gl.clearColor(0.114, 0.122, 0.129, 1);
        gl.clear(gl.COLOR_BUFFER_BIT);
        var size = view.s >= 12 ? 0.92 : 1.0, px = view.s * size * view.dpr;
        var pointMode = px <= Math.min(maxPoint, 32);
        api.pointMode = pointMode;
        use(pointMode ? points : quads);
        var uni = current.uni;
        gl.uniform2f(uni.u_center, view.cx, view.cy);
        gl.uniform1f(uni.u_scale, view.s);
        gl.uniform2f(uni.u_half, view.w / 2, view.h / 2);
        gl.uniform1f(uni.u_size, size);
        gl.uniform1f(uni.u_px, px);
        gl.uniform1f(uni.u_mode, mode);
        gl.uniform1f(uni.u_hasSel, nSel > 0 ? 1 : 0);
        gl.uniform1f(uni.u_border, Math.min(0.5, Math.max(0.015, 2 / view.s)));
        gl.uniform1i(uni.u_tex, 0);
        gl.activeTexture(gl.TEXTURE0);
        for (var k = 0; k < parts.length; k++) {
          var start = parts[k][0], end = parts[k][1], sh = parts[k][2];
          if (end <= start) continue;
          if (sh && sh.thumb) {
            // A whole thumbnail as its own texture, centre-cropped to a square like the cells.
            var m = Math.min(sh.width, sh.height), cu = m / sh.width, cv = m / sh.height;
            gl.bindTexture(gl.TEXTURE_2D, sh.tex);
            gl.uniform1f(uni.u_hasTex, 1);
            gl.uniform1f(uni.u_start, AI[start] === NO_CELL ? 0 : AI[start]);
            gl.uniform1f(uni.u_perRow, 1);
            gl.uniform2f(uni.u_cellUV, cu, cv);
            gl.uniform2f(uni.u_uv0, (1 - cu) / 2, (1 - cv) / 2);
            gl.uniform1f(uni.u_inset, 0);
          } else if (sh) {
            gl.bindTexture(gl.TEXTURE_2D, sh.tex);
            gl.uniform1f(uni.u_hasTex, 1);
            gl.uniform1f(uni.u_start, sh.no * sh.perSheet);
            gl.uniform1f(uni.u_perRow, sh.perRow);
            gl.uniform2f(uni.u_cellUV, sh.level / sh.width, sh.level / sh.height);
            gl.uniform2f(uni.u_uv0, 0, 0);
            gl.uniform1f(uni.u_inset, 0.5 / sh.level);
          } else {
            gl.uniform1f(uni.u_hasTex, 0);
          }
          if (pointMode) gl.drawArrays(gl.POINTS, start, end - start);
          else gl.drawArrays(gl.TRIANGLES, start * 6, (end - start) * 6);
        }
      },
    };
  }

  // ---- Canvas2D fallback -------------------------------------------------------------
  function makeCanvas2D(canvas) {
    var ctx = canvas.getContext("2d");
    if (!ctx) return null;
    return {
      kind: "canvas2d",
      setInstances: function () {},
      upload: function (sheet, bitmap) {
        sheet.bitmap = bitmap; sheet.width = sheet.width || bitmap.width; sheet.height = sheet.height || bitmap.height;
      },
      drop: function (sheet) { if (sheet.bitmap && sheet.bitmap.close) sheet.bitmap.close(); sheet.bitmap = null; },
      draw: function (parts) {
        var dpr = view.dpr;
        ctx.setTransform(1, 0, 0, 1, 0, 0);
        ctx.fillStyle = "#1d1f21";
        ctx.fillRect(0, 0, canvas.width, canvas.height);
        ctx.imageSmoothingEnabled = true;
        var size = view.s >= 12 ? 0.92 : 1.0, px = view.s * size * dpr;
        var hw = view.w / 2 / view.s + 1, hh = view.h / 2 / view.s + 1;
        for (var k = 0; k < parts.length; k++) {
          var start = parts[k][0], end = parts[k][1], sh = parts[k][2];
          for (var i = start; i < end; i++) {
            if (Math.abs(X[i] - view.cx) > hw || Math.abs(Y[i] - view.cy) > hh) continue;
            var sx = ((X[i] - size / 2 - view.cx) * view.s + view.w / 2) * dpr;
            var sy = ((Y[i] - size / 2 - view.cy) * view.s + view.h / 2) * dpr;
            var c = colourIndex(i), pal = palette();
            var col = c >= 0 && pal[c * 4 + 3] ? "rgb(" + pal[c * 4] + "," + pal[c * 4 + 1] + "," + pal[c * 4 + 2] + ")" : "#777";
            drawOne(i, sh, c, col, pal, sx, sy, px);
            if (nSel && !SEL[i]) { ctx.fillStyle = "rgba(29,31,33,0.8)"; ctx.fillRect(sx, sy, px, px); }
            else if (nSel) { ctx.strokeStyle = "#ffd600"; ctx.lineWidth = Math.max(1, px * 0.1); ctx.strokeRect(sx, sy, px, px); }
          }
        }
        function drawOne(i, sh, c, col, pal, sx, sy, px) {
            if (!sh || mode === 3 || px < 3) { ctx.fillStyle = col; ctx.fillRect(sx, sy, px, px); return; }
            if (sh.thumb) {
              var mm = Math.min(sh.width, sh.height);
              ctx.drawImage(sh.bitmap, (sh.width - mm) / 2, (sh.height - mm) / 2, mm, mm, sx, sy, px, px);
              return;
            }
            var cell = AI[i] - sh.no * sh.perSheet;
            ctx.drawImage(sh.bitmap, (cell % sh.perRow) * sh.level, Math.floor(cell / sh.perRow) * sh.level,
                          sh.level, sh.level, sx, sy, px, px);
            if (mode === 1 && c >= 0 && pal[c * 4 + 3]) {
              ctx.strokeStyle = col; ctx.lineWidth = Math.max(1, px * 0.06); ctx.strokeRect(sx, sy, px, px);
            } else if (mode === 2 && c >= 0) {
              ctx.globalAlpha = 0.45; ctx.fillStyle = col; ctx.fillRect(sx, sy, px, px); ctx.globalAlpha = 1;
            }
        }
      },
    };
  }

  // ---- overlay: labels and hover --------------------------------------------------------
  function drawOverlay() {
    var dpr = view.dpr;
    octx.setTransform(dpr, 0, 0, dpr, 0, 0);
    octx.clearRect(0, 0, view.w, view.h);
    if (labelsBox.checked) {
      var placed = [], shown = 0;
      var order = clusters.map(function (c, k) { return k; }).filter(function (k) {
        return clusters[k].kind === "cluster" && clusters[k].on_map > 0 && clusters[k].x !== null;
      }).sort(function (a, b) { return clusters[b].on_map - clusters[a].on_map; });
      octx.textAlign = "center"; octx.textBaseline = "middle"; octx.lineJoin = "round";
      for (var j = 0; j < order.length && shown < 250; j++) {
        var c = clusters[order[j]];
        var rpx = Math.sqrt(c.on_map / Math.PI) * view.s;
        if (rpx < 14) continue;
        var p = toScreen(c.x, c.y);
        if (p[0] < -100 || p[1] < -20 || p[0] > view.w + 100 || p[1] > view.h + 20) continue;
        var text = String(c.label || "");
        if (text.length > 40) text = text.slice(0, 39) + "…";
        var fs = Math.round(Math.max(11, Math.min(18, rpx / 5)));
        octx.font = "600 " + fs + "px system-ui, sans-serif";
        var w = octx.measureText(text).width + 8, h = fs + 6;
        var r = [p[0] - w / 2, p[1] - h / 2, p[0] + w / 2, p[1] + h / 2], clash = false;
        for (var q = 0; q < placed.length; q++) {
          var o = placed[q];
          if (r[0] < o[2] && r[2] > o[0] && r[1] < o[3] && r[3] > o[1]) { clash = true; break; }
        }
        if (clash) continue;
        placed.push(r); shown++;
        octx.lineWidth = 4; octx.strokeStyle = "rgba(0,0,0,0.85)"; octx.strokeText(text, p[0], p[1]);
        octx.fillStyle = "#fff"; octx.fillText(text, p[0], p[1]);
      }
    }
    if (selPath && selPath.length > 1) {
      octx.beginPath();
      selPath.forEach(function (w, k) { var q = toScreen(w[0], w[1]); if (k) octx.lineTo(q[0], q[1]); else octx.moveTo(q[0], q[1]); });
      octx.closePath();
      octx.fillStyle = "rgba(255,214,0,0.12)"; octx.fill();
      octx.setLineDash([6, 4]); octx.lineWidth = 1.5; octx.strokeStyle = "#ffd600"; octx.stroke(); octx.setLineDash([]);
    }
    if (hovered >= 0) {
      var a = toScreen(X[hovered] - 0.5, Y[hovered] - 0.5);
      octx.lineWidth = 2; octx.strokeStyle = "#fff";
      octx.strokeRect(a[0] - 1, a[1] - 1, view.s + 2, view.s + 2);
    }
  }

  var drawPending = false, hashTimer = null;
  function requestDraw() {
    if (drawPending || !renderer) return;
    drawPending = true;
    requestAnimationFrame(draw);
    // Remember the view in the URL (#x,y,zoom): Back from an image page, or a shared
    // link, returns to the same place.
    clearTimeout(hashTimer);
    hashTimer = setTimeout(function () {
      if (!view.fitS) return;
      history.replaceState(null, "", "#" + view.cx.toFixed(1) + "," + view.cy.toFixed(1) + "," + view.s.toFixed(3));
    }, 400);
  }
  function viewFromHash() {
    var m = /^#(-?[\d.]+),(-?[\d.]+),([\d.]+)$/.exec(window.location.hash);
    if (!m) return false;
    var x = parseFloat(m[1]), y = parseFloat(m[2]), z = parseFloat(m[3]);
    if (!isFinite(x) || !isFinite(y) || !(z > 0)) return false;
    view.cx = x; view.cy = y; view.s = clampScale(z);
    requestDraw();
    return true;
  }
  function draw() {
    drawPending = false;
    if (!renderer) return;
    var t = performance.now();
    var parts = plan();
    renderer.draw(parts);
    drawOverlay();
    api.frames++;
    api.drawMs = performance.now() - t;
    var li = levelFor();
    api.level = levels.length ? levels[li].level : null;
    api.detailLoaded = li > 0 ? sheets[li].filter(function (s) { return s.state === 2; }).length : 0;
    if (!api.painted && sheets.length && sheets[0].every(function (s) { return s.state >= 2; })) painted();
  }

  // ---- interaction ---------------------------------------------------------------------
  var pointers = new Map(), dragStart = null, moved = 0, pinchDist = 0;
  // Selecting by dragging: a lasso in lasso mode (api.lasso), a rectangle with shift held.
  // selPath is the outline in map coordinates while the button is down.
  var selPath = null, selKind = null;
  function local(e) { var r = box.getBoundingClientRect(); return [e.clientX - r.left, e.clientY - r.top]; }
  box.addEventListener("pointerdown", function (e) {
    box.setPointerCapture(e.pointerId);
    pointers.set(e.pointerId, local(e));
    dragStart = local(e); moved = 0;
    selKind = pointers.size === 1 && (api.lasso || e.shiftKey) ? (api.lasso && !e.shiftKey ? "lasso" : "rect") : null;
    selPath = selKind ? [toWorld(dragStart[0], dragStart[1])] : null;
    if (pointers.size === 2) {
      var ps = Array.from(pointers.values());
      pinchDist = Math.hypot(ps[0][0] - ps[1][0], ps[0][1] - ps[1][1]);
    }
    box.classList.add("dragging");
  });
  box.addEventListener("pointermove", function (e) {
    var p = local(e);
    if (pointers.has(e.pointerId)) {
      var prev = pointers.get(e.pointerId);
      pointers.set(e.pointerId, p);
      if (selKind && pointers.size === 1) {
        moved += Math.abs(p[0] - prev[0]) + Math.abs(p[1] - prev[1]);
        var w = toWorld(p[0], p[1]), w0 = selPath[0];
        if (selKind === "rect") selPath = [w0, [w[0], w0[1]], w, [w0[0], w[1]]];
        else if (Math.hypot(p[0] - prev[0], p[1] - prev[1]) > 0) selPath.push(w);
        hideTip(); requestDraw();
      } else if (pointers.size === 1) {
        view.cx -= (p[0] - prev[0]) / view.s; view.cy -= (p[1] - prev[1]) / view.s;
        moved += Math.abs(p[0] - prev[0]) + Math.abs(p[1] - prev[1]);
        hideTip(); requestDraw();
      } else if (pointers.size === 2) {
        var ps = Array.from(pointers.values());
        var d = Math.hypot(ps[0][0] - ps[1][0], ps[0][1] - ps[1][1]);
        if (pinchDist > 0) zoomAt((ps[0][0] + ps[1][0]) / 2, (ps[0][1] + ps[1][1]) / 2, d / pinchDist);
        pinchDist = d; moved += 10;
      }
      return;
    }
    hover(p[0], p[1]);
  });
  function endPointer(e) {
    var wasClick = pointers.size === 1 && moved < 5 && e.type === "pointerup";
    pointers.delete(e.pointerId);
    if (!pointers.size) box.classList.remove("dragging");
    if (selKind) {
      var path = selPath;
      selKind = null; selPath = null; requestDraw();
      if (!wasClick && e.type === "pointerup" && path.length > 2) {
        window.dispatchEvent(new CustomEvent("imageclust:select", { detail: { ids: idsInside(path) } }));
        return;
      }
    }
    if (wasClick) {
      var p = local(e), i = pick(p[0], p[1]);
      if (i >= 0 && e.shiftKey && CL[i] >= 0 && clusters[CL[i]].kind === "cluster") {
        window.location.href = cfg.urls.cluster + clusters[CL[i]].id;
      } else if (i >= 0) {
        window.location.href = cfg.urls.image + ID[i];
      }
    }
  }
  box.addEventListener("pointerup", endPointer);
  box.addEventListener("pointercancel", endPointer);
  box.addEventListener("pointerleave", function () { hideTip(); });
  box.addEventListener("wheel", function (e) {
    e.preventDefault();
    var p = local(e), dy = e.deltaMode === 1 ? e.deltaY * 30 : e.deltaY;
    zoomAt(p[0], p[1], Math.exp(-dy * 0.0015));
    hideTip();
  }, { passive: false });
  box.addEventListener("keydown", function (e) {
    var step = 80 / view.s;
    if (e.key === "+" || e.key === "=") zoomAt(view.w / 2, view.h / 2, 1.5);
    else if (e.key === "-") zoomAt(view.w / 2, view.h / 2, 1 / 1.5);
    else if (e.key === "0") fit();
    else if (e.key === "ArrowLeft") { view.cx -= step; requestDraw(); }
    else if (e.key === "ArrowRight") { view.cx += step; requestDraw(); }
    else if (e.key === "ArrowUp") { view.cy -= step; requestDraw(); }
    else if (e.key === "ArrowDown") { view.cy += step; requestDraw(); }
    else return;
    e.preventDefault();
  });
  function hover(px, py) {
    var i = pick(px, py);
    if (i === hovered) { if (i >= 0) placeTip(px, py); return; }
    hovered = i;
    box.classList.toggle("over-image", i >= 0);
    if (i < 0) { hideTip(); requestDraw(); return; }
    tipImg.hidden = !cfg.urls.thumb;
    if (cfg.urls.thumb) tipImg.src = cfg.urls.thumb + ID[i];
    var c = CL[i] >= 0 ? clusters[CL[i]] : null;
    tipText.textContent = (c ? c.label + " · " : "") + "image " + ID[i];
    tip.hidden = false;
    placeTip(px, py);
    requestDraw();
  }
  function placeTip(px, py) {
    var tw = 270, th = 290;
    tip.style.left = (px + 16 + tw > view.w ? Math.max(0, px - tw - 16) : px + 16) + "px";
    tip.style.top = (py + 16 + th > view.h ? Math.max(0, py - th - 16) : py + 16) + "px";
  }
  function hideTip() {
    if (hovered >= 0) { hovered = -1; box.classList.remove("over-image"); requestDraw(); }
    tip.hidden = true;
  }
  modeSel.addEventListener("change", function () { mode = MODES[modeSel.value]; requestDraw(); });
  labelsBox.addEventListener("change", requestDraw);
  document.getElementById("icm-fit").addEventListener("click", fit);
  var layoutSel = document.getElementById("icm-layout");
  if (layoutSel) layoutSel.addEventListener("change", function () {
    var u = new URL(window.location.href); u.searchParams.set("layout", layoutSel.value); u.hash = "";
    window.location.href = u.toString();
  });

  // Find a cluster by label: zoom so the whole cluster fills about half the view.
  var findBox = document.getElementById("icm-find"), clusterList = document.getElementById("icm-clusters");
  function fillClusterList() {
    var order = clusters.map(function (c, k) { return k; }).filter(function (k) {
      return clusters[k].kind === "cluster" && clusters[k].on_map > 0;
    }).sort(function (a, b) { return clusters[b].on_map - clusters[a].on_map; }).slice(0, 2000);
    var seen = {}, frag = document.createDocumentFragment();
    order.forEach(function (k) {
      var text = String(clusters[k].label);
      if (seen[text]) return;
      seen[text] = true;
      var o = document.createElement("option"); o.value = text; frag.appendChild(o);
    });
    clusterList.textContent = "";
    clusterList.appendChild(frag);
  }
  function findCluster(text) {
    text = String(text || "").trim().toLowerCase();
    if (!text) return -1;
    var best = null;
    for (var k = 0; k < clusters.length; k++) {
      var c = clusters[k];
      if (c.kind !== "cluster" || !c.on_map || c.x === null) continue;
      var l = String(c.label).toLowerCase();
      var score = l === text ? 3 : l.indexOf(text) === 0 ? 2 : l.indexOf(text) >= 0 ? 1 : 0;
      if (score && (!best || score > best.score || (score === best.score && c.on_map > clusters[best.k].on_map))) best = { k: k, score: score };
    }
    if (!best) return -1;
    var c2 = clusters[best.k], r = Math.sqrt(c2.on_map / Math.PI) + 1;
    view.cx = c2.x; view.cy = c2.y; view.s = clampScale(Math.min(view.w, view.h) / (4 * r));
    requestDraw();
    return best.k;
  }
  findBox.addEventListener("change", function () {
    findBox.classList.toggle("icm-notfound", findCluster(findBox.value) < 0 && findBox.value !== "");
  });
  api.findCluster = findCluster;

  // Test and scripting hooks.
  api.indexOf = function (id) { for (var i = 0; i < N; i++) if (ID[i] === id) return i; return -1; };
  api.screenOf = function (id) {
    var i = api.indexOf(id); if (i < 0) return null;
    var p = toScreen(X[i], Y[i]), r = box.getBoundingClientRect();
    return { x: r.left + p[0], y: r.top + p[1] };
  };
  api.zoomTo = function (id, s) {
    var i = api.indexOf(id); if (i < 0) return false;
    view.cx = X[i]; view.cy = Y[i]; view.s = clampScale(s || 64); requestDraw(); return true;
  };
  api.fit = fit;
  api.redraw = requestDraw;
  api.idAt = function (clientX, clientY) {
    var r = box.getBoundingClientRect(), i = pick(clientX - r.left, clientY - r.top); return i >= 0 ? ID[i] : null;
  };

  // The ids of the points inside a polygon of map coordinates (even-odd rule).
  function idsInside(poly) {
    var x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity, out = [];
    poly.forEach(function (q) { x0 = Math.min(x0, q[0]); x1 = Math.max(x1, q[0]); y0 = Math.min(y0, q[1]); y1 = Math.max(y1, q[1]); });
    for (var i = 0; i < N; i++) {
      var x = X[i], y = Y[i];
      if (x < x0 || x > x1 || y < y0 || y > y1) continue;
      var inside = false;
      for (var a = 0, b = poly.length - 1; a < poly.length; b = a++) {
        if ((poly[a][1] > y) !== (poly[b][1] > y) &&
            x < (poly[b][0] - poly[a][0]) * (y - poly[a][1]) / (poly[b][1] - poly[a][1]) + poly[a][0]) inside = !inside;
      }
      if (inside) out.push(ID[i]);
    }
    return out;
  }
  api.idsInside = idsInside;
  var indexById = null;
  // Highlight these image ids (null or [] clears); returns how many are on the map.
  api.setSelection = function (ids) {
    if (!indexById) { indexById = new Map(); for (var i = 0; i < N; i++) indexById.set(ID[i], i); }
    SEL = new Uint8Array(N); nSel = 0;
    (ids || []).forEach(function (id) { var k = indexById.get(id); if (k !== undefined && !SEL[k]) { SEL[k] = 1; nSel++; } });
    if (!nSel) SEL = null;
    api.highlighted = nSel;
    renderer.setInstances(); requestDraw();
    return nSel;
  };
  // Zoom so that every highlighted point is in view.
  api.zoomToSelection = function () {
    if (!nSel) return false;
    var x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
    for (var i = 0; i < N; i++) if (SEL[i]) { x0 = Math.min(x0, X[i]); x1 = Math.max(x1, X[i]); y0 = Math.min(y0, Y[i]); y1 = Math.max(y1, Y[i]); }
    view.cx = (x0 + x1) / 2; view.cy = (y0 + y1) / 2;
    view.s = clampScale(Math.min(view.w / (x1 - x0 + 3), view.h / (y1 - y0 + 3), 64));
    requestDraw();
    return true;
  };
  // Colour by a column: one category (-1: none) per point in points.bin order and an rgba
  // palette per category; null goes back to the cluster colours.
  api.setCategories = function (values, pal) {
    CAT = values; catColors = pal;
    renderer.setInstances(); requestDraw();
  };
  api.hsl = hsl;
  api.pointCount = function () { return N; };

  // ---- start ---------------------------------------------------------------------------
  // Points, clusters and the overview sheets are fetched (and decoded) in parallel.
  var t0 = performance.now();
  var prefetched = {};
  if (levels.length) levels[0].sheets.forEach(function (sh) {
    prefetched[sh.url] = fetchBitmap(sh.url);
    prefetched[sh.url].catch(function () {});  // reported when used
  });
  var clustersFetch = cfg.clusters ? Promise.resolve(cfg.clusters) : fetch(cfg.urls.clusters).then(function (r) {
    if (!r.ok) throw new Error("clusters: HTTP " + r.status);
    return r.json();
  }).then(function (d) { return d.clusters || []; });
  Promise.all([fetch(cfg.points.url).then(function (r) {
    if (!r.ok) throw new Error("points: HTTP " + r.status);
    return r.arrayBuffer();
  }), clustersFetch]).then(function (got) {
    parsePoints(got[0]);
    clusters = got[1];
    colors = clusterColors();
    fillClusterList();
    buildRanges();
    try { renderer = makeGL(glCanvas); } catch (err) { renderer = null; console.warn("WebGL failed:", err); }
    if (!renderer) renderer = makeCanvas2D(glCanvas);
    api.renderer = renderer.kind;
    renderer.setInstances();
    resize();
    fit();
    viewFromHash();
    countEl.textContent = N.toLocaleString() + " images" + (clusters.length ? ", " + clusters.filter(function (c) {
      return c.kind === "cluster"; }).length.toLocaleString() + " clusters" : "") + " · " + renderer.kind;
    window.dispatchEvent(new CustomEvent("imageclust:ready"));  // mapselect.js starts here
    api.ready = true;
    if (!sheets.length) { setStatus("no atlas: squares only"); requestDraw(); painted(); return; }
    return Promise.all(sheets[0].map(function (s) { return load(s, true); })).then(function () {
      setStatus("");
      requestDraw();
      setTimeout(buildGrid, 0);  // hover index after the first paint
      api.loadMs = performance.now() - t0;
    });
  }).catch(function (err) {
    setStatus("could not load the map: " + err.message);
    painted();
  });
  if (window.ResizeObserver) new ResizeObserver(resize).observe(box);
  else window.addEventListener("resize", resize);
})();
