// Live updates for the dashboards: ask the page's /live endpoint for its regions' HTML
// every data-every milliseconds and swap the regions that changed. No reload, no library.
(function () {
  "use strict";
  var body = document.body;
  var url = body.getAttribute("data-live");
  if (!url) {
    return;
  }
  var every = parseInt(body.getAttribute("data-every") || "5000", 10);
  var stamp = document.getElementById("updated");
  var last = {};

  function say(text) {
    if (stamp) {
      stamp.textContent = text;
    }
  }

  function apply(data) {
    Object.keys(data.regions).forEach(function (id) {
      var html = data.regions[id];
      var element = document.getElementById(id);
      if (element && last[id] !== html) {
        element.innerHTML = html;
        last[id] = html;
      }
    });
    say("Live · updated " + data.at);
  }

  window.bankiotPoll(url, every, apply, say, "Signed out: sign in again to see live updates.");
})();
