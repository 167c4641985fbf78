// seqrun dashboard: refresh the page's content every few seconds without reloading the page.
// Skipped while the user is selecting text, typing in a field or the tab is hidden.
(function () {
  "use strict";
  var main = document.getElementById("content");
  if (!main || !main.dataset.refresh) { return; }
  var every = Math.max(2, Number(main.dataset.every) || 5) * 1000;
  var busy = false;

  function userIsBusy() {
    var selection = window.getSelection ? window.getSelection() : null;
    if (selection && !selection.isCollapsed && String(selection).length > 0) { return true; }
    var active = document.activeElement;
    return Boolean(active && main.contains(active) && /^(INPUT|TEXTAREA|SELECT)$/.test(active.tagName));
  }

  function refresh() {
    if (busy || document.hidden) { return; }
    if (userIsBusy()) {  // counted, so that one can see (and a test wait for) a refresh held back
      main.dataset.heldBack = String((Number(main.dataset.heldBack) || 0) + 1);
      return;
    }
    busy = true;
    fetch(main.dataset.refresh, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (response) {
        if (response.status === 401) { window.location.reload(); return null; }
        return response.ok ? response.text() : null;
      })
      .then(function (html) {
        if (html !== null && html !== undefined && !userIsBusy()) {
          main.innerHTML = html;
          var clock = document.querySelector(".clock");
          if (clock) { clock.textContent = "updated " + new Date().toISOString().slice(11, 19) + " UTC"; }
        }
      })
      .catch(function () { /* the server is restarting: try again at the next tick */ })
      .then(function () { busy = false; });
  }

  window.setInterval(refresh, every);
})();
