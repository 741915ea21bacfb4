/* Only enhances the re-check progress on the remediation page: without it, the page reloads
   itself (a <noscript> refresh) and every result is server-rendered. */
(function () {
  "use strict";
  var box = document.getElementById("check-box");
  if (!box || !window.fetch || !window.JSON) { return; }
  var url = box.getAttribute("data-status-url");
  var busy = { queued: true, running: true };
  if (!busy[box.getAttribute("data-state")]) { return; }
  var attempts = 0;

  function setResult(el, status, text) {
    if (!el) { return; }
    el.textContent = text;
    el.className = "result result-" + (status || "pending");
  }

  function apply(data) {
    var progress = document.getElementById("check-progress");
    if (progress) {
      progress.textContent = data.progress || "";
      if (!data.progress) { progress.parentNode.removeChild(progress); }
    }
    (data.findings || []).forEach(function (f) {
      setResult(document.querySelector('[data-target-result="' + f.target + '"]'),
                f.result, f.result_text);
      setResult(document.querySelector('[data-target-status="' + f.target + '"]'),
                f.status, f.status_text);
    });
    var status = document.getElementById("case-status");
    if (status && data.case_status_text) {
      status.textContent = data.case_status_text;
      status.className = "case-status case-" + data.case_status;
    }
    var next = document.getElementById("next-text");
    if (next && data.next_text) { next.textContent = data.next_text; }
    box.setAttribute("data-state", data.state);
    if (data.can_recheck === false) {
      var forms = document.querySelectorAll("form.check-form");
      for (var i = 0; i < forms.length; i += 1) { forms[i].parentNode.removeChild(forms[i]); }
    }
  }

  function poll() {
    attempts += 1;
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (data) {
        if (!data) { return; }
        apply(data);
        if (busy[data.state] && attempts < 400) { window.setTimeout(poll, 3000); }
      })
      .catch(function () {
        if (attempts < 400) { window.setTimeout(poll, 10000); }
      });
  }

  window.setTimeout(poll, 1500);
}());
