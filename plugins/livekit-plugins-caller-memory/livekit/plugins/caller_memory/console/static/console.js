// The console's own script (the Content-Security-Policy allows no inline script).
//
// Times: pages write each moment as <time datetime="...Z">2026-12-07 14:30 UTC</time>; here
// it is shown in the browser's own time zone, the UTC time kept in its title (on hover).
// Pages htmx swaps in (the health panel) are done again once settled.
(function () {
  "use strict";

  function pad(n) {
    return String(n).padStart(2, "0");
  }

  function zoneName(date) {
    try {
      var parts = new Intl.DateTimeFormat(undefined, { timeZoneName: "short" }).formatToParts(date);
      var zone = parts.find(function (part) { return part.type === "timeZoneName"; });
      return zone ? " " + zone.value : "";
    } catch (e) {
      return "";
    }
  }

  function localTime(date) {
    return date.getFullYear() + "-" + pad(date.getMonth() + 1) + "-" + pad(date.getDate()) +
      " " + pad(date.getHours()) + ":" + pad(date.getMinutes()) + zoneName(date);
  }

  function localize(root) {
    root.querySelectorAll("time[datetime]:not([data-local])").forEach(function (element) {
      var date = new Date(element.getAttribute("datetime"));
      if (isNaN(date.getTime())) {
        return;
      }
      if (!element.title) {
        element.title = element.textContent;
      }
      element.textContent = localTime(date);
      element.setAttribute("data-local", "");
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", function () { localize(document); });
  } else {
    localize(document);
  }
  document.addEventListener("htmx:afterSettle", function (event) { localize(event.target); });
})();
