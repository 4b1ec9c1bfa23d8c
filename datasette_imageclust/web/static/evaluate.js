// The coding page of an evaluation task: a click on a label (or "none fits") stores the
// answer with a JSON POST and opens the coder's next unanswered set. Keys 1-9 pick labels.
(function () {
  var form = document.querySelector("form.ic-answer");
  if (!form) return;
  var status = document.querySelector(".ic-status");
  function go(setNo) {
    var q = new URLSearchParams();
    if (form.dataset.coder) q.set("coder", form.dataset.coder);
    if (setNo) q.set("set", setNo);
    var s = q.toString();
    window.location.href = form.dataset.here + (s ? "?" + s : "");
  }
  function answer(button) {
    var body = {set: Number(form.dataset.set), cluster: button.dataset.cluster === "" ? null : Number(button.dataset.cluster)};
    if (form.dataset.coder) body.coder = form.dataset.coder;
    form.querySelectorAll("button").forEach(function (b) { b.disabled = true; });
    status.textContent = "saving…";
    fetch(form.dataset.answerUrl, {method: "POST", credentials: "same-origin",
                                   headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)})
      .then(function (r) { return r.json().then(function (j) { return [r, j]; }); })
      .then(function (rj) {
        if (!rj[1].ok) throw new Error((rj[1].errors || [rj[1].error || rj[0].status]).join("; "));
        go(rj[1].next_set);
      })
      .catch(function (e) {
        status.textContent = "not saved: " + e.message;
        form.querySelectorAll("button").forEach(function (b) { b.disabled = false; });
      });
  }
  form.addEventListener("click", function (ev) {
    var b = ev.target.closest("button.ic-choice");
    if (b && !b.disabled) answer(b);
  });
  document.addEventListener("keydown", function (ev) {
    if (ev.altKey || ev.ctrlKey || ev.metaKey || /^(INPUT|TEXTAREA|SELECT)$/.test(ev.target.tagName)) return;
    var n = Number(ev.key);
    var buttons = form.querySelectorAll("button.ic-choice");
    if (n >= 1 && n <= buttons.length && !buttons[n - 1].disabled) { ev.preventDefault(); answer(buttons[n - 1]); }
  });
  form.dataset.ready = "1";  // the buttons answer from now on (tests wait for it)
})();
