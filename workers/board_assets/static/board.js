// 督办看板: refresh the sections from /api/board every data-refresh seconds, without a reload.
// On a failed fetch the last numbers stay on screen and the status says since when.
(function () {
  "use strict";
  var every = (parseInt(document.body.dataset.refresh, 10) || 5) * 1000;
  var status = document.getElementById("status");
  var generated = document.getElementById("generated");
  var today = document.getElementById("today");

  function show(text, ok) {
    status.textContent = text;
    status.className = "status " + (ok ? "ok" : "bad");
  }

  function refresh() {
    fetch("api/board", { cache: "no-store", credentials: "same-origin" })
      .then(function (r) {
        if (!r.ok) { throw new Error("HTTP " + r.status); }
        return r.json();
      })
      .then(function (doc) {
        Object.keys(doc.html).forEach(function (name) {
          var el = document.querySelector('[data-section="' + name + '"]');
          if (el) { el.innerHTML = doc.html[name]; }
        });
        generated.textContent = doc.generated;
        if (doc.data) { today.textContent = doc.data.today; }
        show(doc.error || "数据正常", !doc.error);
      })
      .catch(function (e) {
        show("连接中断（" + e.message + "），显示的是 " + generated.textContent + " 的数据", false);
      })
      .then(function () { window.setTimeout(refresh, every); });
  }

  window.setTimeout(refresh, every);
})();
