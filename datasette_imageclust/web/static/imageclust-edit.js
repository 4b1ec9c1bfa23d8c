// Edit controls of the cluster and image pages: each <form data-op="..."> inside #ic-edit
// posts its edit as JSON to the write API (README "Write API"), then reloads the page so
// it shows the new state; the answer is shown in the status line (kept across the reload).
// On a cluster page, tiles of the grid get a checkbox: "move" and "split" use the ticked ones.
(function () {
  "use strict";
  var box = document.getElementById("ic-edit");
  if (!box) return;
  var KEY = "imageclust-edit-message";
  var status = box.querySelector(".ic-edit-status");
  var picked = new Set();

  function say(text, isError) {
    status.textContent = text;
    status.classList.toggle("ic-edit-error", !!isError);
    status.classList.toggle("ic-edit-ok", !isError);
  }

  // A message left by the edit that caused this reload.
  try {
    var left = sessionStorage.getItem(KEY);
    if (left) { sessionStorage.removeItem(KEY); say(left, false); }
  } catch (e) { /* storage disabled: no message after reload */ }

  function describe(op) {
    var n = op.images, c = op.clusters || [];
    switch (op.op) {
      case "label": return "Renamed cluster " + c[0] + ".";
      case "note": return "Saved the note of cluster " + c[0] + ".";
      case "review": return "Updated the reviewed state of cluster " + c[0] + ".";
      case "move": return "Moved " + n + " image" + (n === 1 ? "" : "s") + ".";
      case "merge": return "Merged into cluster " + c[0] + ".";
      case "split": return "Split " + n + " image" + (n === 1 ? "" : "s") + " off as cluster " + c[0] + ".";
      case "undo": return "Undid the last " + (op.undid || "edit") + ".";
    }
    return "Done.";
  }

  function ids(text) { return text === "" ? null : parseInt(text, 10); }

  // The JSON body of one form's edit, or a string saying what is missing.
  function bodyOf(form) {
    var op = form.dataset.op, f = form.elements, run = form.dataset.run || box.dataset.run;
    var cluster = box.dataset.cluster ? parseInt(box.dataset.cluster, 10) : null;
    var body = {};
    if (run) body.run = run;
    if (op === "label") { body.cluster = cluster; body.label = f.label.value; }
    else if (op === "note") { body.cluster = cluster; body.note = f.note.value; }
    else if (op === "review") { body.cluster = cluster; body.reviewed = f.reviewed.value === "true"; }
    else if (op === "merge") {
      if (!f.into.value) return "Choose the cluster to merge into.";
      body.clusters = [ids(f.into.value), cluster];
    } else if (op === "move" || op === "split") {
      var images = box.dataset.image ? [parseInt(box.dataset.image, 10)] : Array.from(picked);
      if (!images.length) return "Tick the images to " + op + " first.";
      body.images = images;
      if (op === "move") body.to = ids(f.to.value);
      else body.label = f.label.value;
    }
    return body;
  }

  function send(form) {
    var body = bodyOf(form);
    if (typeof body === "string") { say(body, true); return; }
    var buttons = form.querySelectorAll("button");
    buttons.forEach(function (b) { b.disabled = true; });
    say("Saving…", false);
    fetch(box.dataset.api + form.dataset.op, {
      method: "POST", credentials: "same-origin",
      headers: {"Content-Type": "application/json", "Accept": "application/json"},
      body: JSON.stringify(body)
    }).then(function (r) {
      return r.json().catch(function () { return {ok: false, errors: ["the server answered " + r.status]}; });
    }).then(function (answer) {
      if (!answer.ok) {
        say("Not saved: " + (answer.errors || [answer.error || "unknown error"]).join("; "), true);
        buttons.forEach(function (b) { b.disabled = false; });
        return;
      }
      var op = answer.operation;
      try { sessionStorage.setItem(KEY, describe(op)); } catch (e) { /* shown below instead */ }
      say(describe(op), false);
      // A merged cluster is gone: show the one it went into; everything else: this page again.
      if (op.op === "merge" && box.dataset.cluster) window.location.href = box.dataset.base + "/cluster/" + op.clusters[0];
      else window.location.reload();
    }).catch(function (e) {
      say("Not saved: " + e, true);
      buttons.forEach(function (b) { b.disabled = false; });
    });
  }

  box.querySelectorAll("form[data-op]").forEach(function (form) {
    form.addEventListener("submit", function (ev) { ev.preventDefault(); send(form); });
  });

  // Tick boxes on the grid's tiles (cluster page).
  var grid = document.querySelector(".ic-grid.ic-pickable");
  var count = box.querySelector("[data-ic-selected]");
  if (!grid || !count) return;
  function update() { count.textContent = String(picked.size); }
  grid.querySelectorAll(".ic-tile[data-image-id]").forEach(function (tile) {
    var id = parseInt(tile.dataset.imageId, 10);
    var check = document.createElement("input");
    check.type = "checkbox";
    check.className = "ic-pick";
    check.setAttribute("aria-label", "select image " + id);
    check.addEventListener("click", function (ev) { ev.stopPropagation(); });
    check.addEventListener("change", function () {
      if (check.checked) picked.add(id); else picked.delete(id);
      tile.classList.toggle("ic-picked", check.checked);
      update();
    });
    tile.insertBefore(check, tile.firstChild);
  });
  function all(on) {
    grid.querySelectorAll("input.ic-pick").forEach(function (c) {
      if (c.checked !== on) { c.checked = on; c.dispatchEvent(new Event("change")); }
    });
  }
  box.querySelector("[data-ic-select-all]").addEventListener("click", function () { all(true); });
  box.querySelector("[data-ic-select-none]").addEventListener("click", function () { all(false); });
  document.documentElement.dataset.icEditReady = "1";  // the controls work from now on (tests wait for it)
})();
