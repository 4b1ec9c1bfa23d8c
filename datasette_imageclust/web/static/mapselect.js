/* datasette-imageclust map: the selection and colouring by a column, on top of map.js
 * (which draws; this file only calls window.__imageclustMap).
 *
 * Selection: from the URL (?sql= / ?ids=, resolved by the server into cfg.selection), or
 * by dragging on the map (lasso mode, or shift-drag for a rectangle; map.js reports the
 * ids inside with an "imageclust:select" event). The current selection's image ids are
 * window.__imageclustSelection (an array). It opens as a Datasette query of the images
 * table (and its CSV) through cfg.urls.selection_sql with :ids = "1,2,3", and downloads
 * through the export (a link, or a POST of #icm-sel-export-form when the link is too long).
 * Everything from the database is set as textContent, never parsed as HTML.
 */
(function () {
  "use strict";
  var cfg = JSON.parse(document.getElementById("icm-config").textContent);
  var api = window.__imageclustMap;
  function $(id) { return document.getElementById(id); }
  var bar = $("icm-sel"), countEl = $("icm-sel-count"), noteEl = $("icm-sel-note");
  var queryLink = $("icm-sel-query"), csvLink = $("icm-sel-csv"), actionsEl = $("icm-sel-actions");
  var exportLinks = { csv: $("icm-sel-export-csv"), zip: $("icm-sel-export-zip") };
  var lassoBtn = $("icm-lasso"), byEl = $("icm-colour-by"), legend = $("icm-legend");
  var limits = cfg.limits || { selection: 20000, url: 8000, colours: 12 };
  window.__imageclustSelection = [];
  if (!api || !bar) return;

  // ---- CURATION HOOK --------------------------------------------------------------------
  // Actions on the selected images (the curation buttons of the write API) register here:
  //   window.__imageclustMap.addSelectionAction({label: "Move to…", title: "...",
  //                                              run: function (ids) { ... }})
  // adds a button to #icm-sel-actions, shown while something is selected, that calls
  // run(ids) with the selected image ids. The "imageclust:selection" window event
  // (detail.ids, detail.source) tells them whenever the selection changes.
  api.addSelectionAction = function (action) {
    var b = document.createElement("button");
    b.type = "button"; b.textContent = action.label; if (action.title) b.title = action.title;
    b.addEventListener("click", function () { action.run(window.__imageclustSelection.slice()); });
    actionsEl.appendChild(b);
    return b;
  };

  function selectionQuery(ids) {
    // Commas need no escaping in a query string: ids stay ~1 character each plus digits.
    return "?sql=" + encodeURIComponent(cfg.urls.selection_sql) + "&ids=" + ids.join(",");
  }
  function setUrl(ids, source) {
    var u = new URL(window.location.href);
    if (source === "query" || source === "ids") return;  // the URL already says it
    u.searchParams.delete("sql"); u.searchParams.delete("ids"); u.hash = "";
    var q = u.toString();
    if (ids.length) {
      var withIds = q + (u.search ? "&" : "?") + "ids=" + ids.join(",");
      if (withIds.length <= limits.url) q = withIds;  // else too long to keep in the URL
    }
    history.replaceState(null, "", q + window.location.hash);
  }

  // Select these ids (source: "query", "ids", "lasso" or "clear").
  function select(ids, source, truncated) {
    ids = ids || [];
    window.__imageclustSelection = ids.slice();
    var onMap = api.setSelection(ids);
    api.selectionSource = source;
    bar.hidden = !ids.length;
    countEl.textContent = ids.length.toLocaleString() + " selected" +
      (ids.length - onMap ? ", " + (ids.length - onMap).toLocaleString() + " not on the map" : "");
    var notes = [];
    if (truncated) notes.push("the query returned more: the first " + limits.selection.toLocaleString() + " are selected");
    var q = selectionQuery(ids), fits = (cfg.urls.query + q).length <= limits.url;
    queryLink.hidden = csvLink.hidden = !fits;
    if (fits) {
      queryLink.href = cfg.urls.query + q;
      csvLink.href = cfg.urls.csv + q + "&_stream=on";
    } else if (ids.length) {
      notes.push("too many to open as a query (the link would pass " + limits.url.toLocaleString() + " characters)");
    }
    // The export of the selection (imageclust export's csv / zip) with its clusters in this
    // map's run: a link while its URL fits (it can be copied or opened in a new tab), else the
    // same parameters posted by a form (postExport), so any selection up to the cap downloads.
    var exportUrl = cfg.urls.export + "?" + (cfg.run_id == null ? "" : "run=" + cfg.run_id + "&") + "ids=" + ids.join(",");
    var exportFits = (exportUrl + "&format=csv").length <= limits.url;
    Object.keys(exportLinks).forEach(function (fmt) {
      var a = exportLinks[fmt];
      if (exportFits) {
        a.href = exportUrl + "&format=" + fmt; a.removeAttribute("role"); a.removeAttribute("tabindex");
      } else {  // no href: a middle-click cannot open the export without its ids
        a.removeAttribute("href"); a.setAttribute("role", "button"); a.tabIndex = 0;
      }
    });
    noteEl.textContent = notes.join("; ");
    if (source !== "init") setUrl(ids, source);
    window.dispatchEvent(new CustomEvent("imageclust:selection", { detail: { ids: ids.slice(), source: source } }));
  }
  api.select = select;

  // A selection too long for a URL: its export as a POST of the page's hidden form (with
  // Datasette's CSRF token). The answer is an attachment, so the map stays open.
  var exportForm = $("icm-sel-export-form");
  function postExport(fmt) {
    var f = exportForm.elements;
    f.namedItem("format").value = fmt;
    f.namedItem("ids").value = window.__imageclustSelection.join(",");
    f.namedItem("run").disabled = cfg.run_id == null;  // a disabled field is not sent
    f.namedItem("run").value = cfg.run_id == null ? "" : String(cfg.run_id);
    exportForm.submit();
  }
  Object.keys(exportLinks).forEach(function (fmt) {
    var a = exportLinks[fmt];
    function go(e) { if (!a.hasAttribute("href")) { e.preventDefault(); postExport(fmt); } }
    a.addEventListener("click", go);
    a.addEventListener("keydown", function (e) { if (e.key === "Enter" || e.key === " ") go(e); });
  });

  function setLasso(on) {
    api.lasso = on;
    lassoBtn.setAttribute("aria-pressed", on ? "true" : "false");
    $("icm-map").classList.toggle("lasso", on);
  }
  lassoBtn.addEventListener("click", function () { setLasso(!api.lasso); });
  $("icm-sel-zoom").addEventListener("click", function () { api.zoomToSelection(); });
  $("icm-sel-clear").addEventListener("click", function () { select([], "clear"); });
  $("icm-map").addEventListener("keydown", function (e) {
    if (e.key === "l" || e.key === "L") setLasso(!api.lasso);
    else if (e.key === "Escape") { if (api.lasso) setLasso(false); else select([], "clear"); }
  });
  window.addEventListener("imageclust:select", function (e) {
    if (e.detail.ids.length > limits.selection) {
      noteEl.textContent = "at most " + limits.selection.toLocaleString() + " images can be selected";
      return;
    }
    select(e.detail.ids, "lasso");
  });

  // ---- colour by a column --------------------------------------------------------------
  // A qualitative palette (12 colours) and grey for "other".
  var PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf",
                 "#bcbd22", "#aec7e8", "#ffbb78", "#98df8a"];
  var OTHER = "#8a8a8a";
  function rgb(hex) { return [parseInt(hex.slice(1, 3), 16), parseInt(hex.slice(3, 5), 16), parseInt(hex.slice(5, 7), 16)]; }
  function palette(n) {
    var out = new Uint8Array((n + 1) * 4);
    for (var k = 0; k <= n; k++) {
      var c = rgb(k < n ? PALETTE[k % PALETTE.length] : OTHER);
      out[k * 4] = c[0]; out[k * 4 + 1] = c[1]; out[k * 4 + 2] = c[2]; out[k * 4 + 3] = 255;
    }
    return out;
  }
  function showLegend(d, title) {
    legend.textContent = "";
    var h = document.createElement("div"); h.className = "icm-legend-title"; h.textContent = title; legend.appendChild(h);
    function row(colour, label, count) {
      var r = document.createElement("div"); r.className = "icm-legend-row";
      var sw = document.createElement("span"); sw.className = "icm-swatch"; sw.style.background = colour;
      var t = document.createElement("span"); t.className = "icm-legend-label"; t.textContent = label;
      t.title = label;
      var n = document.createElement("span"); n.className = "icm-legend-count"; n.textContent = count.toLocaleString();
      r.appendChild(sw); r.appendChild(t); r.appendChild(n); legend.appendChild(r);
    }
    d.legend.forEach(function (e, k) { row(PALETTE[k % PALETTE.length], String(e.label), e.count); });
    if (d.other) row(OTHER, "other (" + (d.distinct - d.legend.length).toLocaleString() + " values)", d.other);
    if (d.missing) row("transparent", "no value", d.missing);
    legend.hidden = false;
  }
  function colourBy(by) {
    if (!by) { api.setCategories(null, null); legend.hidden = true; legend.textContent = ""; return; }
    var title = byEl.options[byEl.selectedIndex].textContent;
    legend.hidden = false; legend.textContent = "loading…";
    fetch(cfg.urls.colour + "&by=" + encodeURIComponent(by)).then(function (r) {
      return r.json().then(function (d) { if (!r.ok) throw new Error(d.error || "HTTP " + r.status); return d; });
    }).then(function (d) {
      if (byEl.value !== by) return;  // chosen again meanwhile
      if (d.count !== api.pointCount()) throw new Error("the map changed: reload the page");
      api.setCategories(Int8Array.from(d.values, function (v) { return v; }), palette(d.legend.length));
      showLegend(d, title);
      api.colouredBy = by;
    }).catch(function (err) { legend.textContent = "cannot colour by " + title + ": " + err.message; });
  }
  if (byEl) byEl.addEventListener("change", function () { colourBy(byEl.value); });
  api.colourBy = function (by) { byEl.value = by; colourBy(by); };

  function start() {
    var sel = cfg.selection;
    if (sel && sel.ids.length) {
      select(sel.ids, "init", sel.truncated);
      api.zoomToSelection();
    } else if (sel) {
      select([], "init");
      bar.hidden = false;
      countEl.textContent = "0 selected";
      noteEl.textContent = sel.source === "sql" ? "the query returned no images" : "";
    }
    if (byEl && byEl.value) colourBy(byEl.value);
  }
  if (api.ready) start(); else window.addEventListener("imageclust:ready", start);
})();
