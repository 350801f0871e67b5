// Keyboard shortcuts for the review pages. Loaded as a file (the CSP forbids inline script).
"use strict";
(function () {
  function typing(target) {
    var tag = target && target.tagName;
    return tag === "TEXTAREA" || tag === "SELECT" || (tag === "INPUT" && target.type !== "checkbox");
  }
  function submit(formId, buttonId) {
    var form = document.getElementById(formId);
    if (!form) { return false; }
    var button = buttonId ? document.getElementById(buttonId) : null;
    if (form.requestSubmit) { form.requestSubmit(button || undefined); } else { (button || form).click(); }
    return true;
  }
  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey) { return; }
    if (event.key === "Escape" && typing(event.target)) { event.target.blur(); return; }
    if (typing(event.target)) { return; }
    var key = event.key, done = false;
    if (key === "o") { done = submit("label-form", "label-ok"); }
    else if (key === "v") { done = submit("label-form", "label-violation"); }
    else if (key === "u") { done = submit("label-form", "label-unsure"); }
    else if (key === "s") { done = submit("skip-form", "skip-button"); }
    else if (key === "n") { done = submit("claim-next", "claim-next-button"); }
    else if (key === "c") {
      var comment = document.getElementById("comment");
      if (comment) { comment.focus(); done = true; }
    } else if (key === "e") { window.location.href = "/review/estimates"; done = true; }
    else if (key === "q") { window.location.href = "/review/queue"; done = true; }
    else if (/^[1-9]$/.test(key)) {
      var box = document.querySelector('input[type=checkbox][data-key="' + key + '"]');
      if (box) { box.checked = !box.checked; done = true; }
    }
    if (done) { event.preventDefault(); }
  });
}());
