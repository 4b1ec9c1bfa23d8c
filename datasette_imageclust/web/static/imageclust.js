// Keyboard shortcuts for the imageclust pages: a link with data-ic-key="ArrowRight"
// (next cluster, next page...) is followed when that key is pressed outside a form field.
document.addEventListener("keydown", function (ev) {
  if (ev.altKey || ev.ctrlKey || ev.metaKey || ev.shiftKey) return;
  var t = ev.target;
  if (t && (t.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(t.tagName))) return;
  var link = document.querySelector('a[data-ic-key="' + ev.key + '"]');
  if (link) { ev.preventDefault(); window.location.href = link.href; }
});
