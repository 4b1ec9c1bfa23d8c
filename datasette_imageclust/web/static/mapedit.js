/* datasette-imageclust map: curation of the selection (loaded only when the page's config
 * has "edit": the actor may edit and the database is writable; mappage.py decides).
 *
 * Registers two selection actions through mapselect.js's hook
 * (window.__imageclustMap.addSelectionAction): "Move to cluster…" (a cluster of the map's
 * run, or unclustered) and "Split off as a new cluster" (an optional label). Each posts
 * JSON to the write API (cfg.edit.api + op, README "Write API") with the selected ids and
 * the map's run, then reloads the page, whose points and clusters then carry the edit;
 * the outcome stays in the status line across the reload.
 * Everything from the database is set as textContent, never parsed as HTML.
 */
(function () {
  "use strict";
  var cfg = JSON.parse(document.getElementById("icm-config").textContent);
  var api = window.__imageclustMap, edit = cfg.edit;
  var actionsEl = document.getElementById("icm-sel-actions");
  if (!api || !api.addSelectionAction || !edit || !actionsEl) return;
  var KEY = "imageclust-map-edit-message";

  var form = document.createElement("span");
  form.id = "icm-edit"; form.className = "icm-edit"; form.hidden = true;
  var picker = document.createElement("select");
  picker.id = "icm-edit-to"; picker.setAttribute("aria-label", "cluster to move the selection to");
  function option(value, text) {
    var o = document.createElement("option"); o.value = value; o.textContent = text; picker.appendChild(o);
  }
  option("", "unclustered");
  edit.clusters.forEach(function (c) {
    option(String(c.id), "#" + c.id + (c.label ? " " + c.label : "") + " (" + c.size + ")");
  });
  var label = document.createElement("input");
  label.id = "icm-edit-label"; label.type = "text"; label.size = 16; label.placeholder = "label (optional)";
  label.setAttribute("aria-label", "label of the new cluster");
  var apply = document.createElement("button"); apply.type = "button"; apply.id = "icm-edit-apply";
  var cancel = document.createElement("button"); cancel.type = "button"; cancel.textContent = "Cancel";
  var status = document.createElement("span"); status.id = "icm-edit-status"; status.className = "icm-help";
  [picker, label, apply, cancel].forEach(function (el) { form.appendChild(el); });
  actionsEl.parentNode.insertBefore(form, actionsEl.nextSibling);
  actionsEl.parentNode.insertBefore(status, form.nextSibling);

  try {
    var left = sessionStorage.getItem(KEY);
    if (left) { sessionStorage.removeItem(KEY); status.textContent = left; }
  } catch (e) { /* storage disabled: no message after the reload */ }

  var pending = null;  // {op, ids}
  function open(op, ids) {
    if (!ids.length) return;
    pending = { op: op, ids: ids };
    picker.hidden = op !== "move"; label.hidden = op !== "split";
    apply.textContent = op === "move" ? "Move " + ids.length : "Split off " + ids.length;
    form.hidden = false; status.textContent = "";
    (op === "move" ? picker : label).focus();
  }
  function close() { pending = null; form.hidden = true; }
  cancel.addEventListener("click", close);
  window.addEventListener("imageclust:selection", close);  // the ids the form was for are gone

  function send() {
    if (!pending) return;
    var body = { run: edit.run, images: pending.ids };
    if (pending.op === "move") body.to = picker.value === "" ? null : parseInt(picker.value, 10);
    else body.label = label.value;
    apply.disabled = true; status.textContent = "Saving…";
    fetch(edit.api + pending.op, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "Accept": "application/json" },
      body: JSON.stringify(body)
    }).then(function (r) {
      return r.json().catch(function () { return { ok: false, errors: ["the server answered " + r.status] }; });
    }).then(function (answer) {
      apply.disabled = false;
      if (!answer.ok) { status.textContent = "Not saved: " + (answer.errors || ["unknown error"]).join("; "); return; }
      var op = answer.operation, n = op.images;
      var text = (op.op === "move" ? "Moved " : "Split ") + n + " image" + (n === 1 ? "" : "s") +
        (op.op === "move" ? "." : " off as cluster " + op.clusters[0] + ".");
      try { sessionStorage.setItem(KEY, text); } catch (e) { /* shown below instead */ }
      status.textContent = text;
      window.location.reload();  // the points, colours and labels now carry the edit
    }).catch(function (e) { apply.disabled = false; status.textContent = "Not saved: " + e; });
  }
  apply.addEventListener("click", send);

  api.addSelectionAction({ label: "Move to cluster…", title: "Move the selected images to a cluster of this map's run",
                           run: function (ids) { open("move", ids); } });
  api.addSelectionAction({ label: "Split off as a new cluster", title: "Make the selected images a new cluster of this map's run",
                           run: function (ids) { open("split", ids); } });
})();
