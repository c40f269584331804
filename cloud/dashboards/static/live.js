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

  // Leaving the page (a form sent, a link followed, the tab closed) stops the polling and
  // cancels a request in flight: after "Sign out", a poll the server answered after the
  // session ended would otherwise come back 401 to a page that is going away.
  var leaving = false;
  var inflight = null;
  var timer = null;

  function later(ms) {
    if (!leaving) {
      timer = window.setTimeout(tick, ms);
    }
  }

  function leave() {
    leaving = true;
    window.clearTimeout(timer);
    if (inflight) {
      inflight.abort();
    }
  }

  document.addEventListener("submit", leave, true);
  window.addEventListener("beforeunload", leave);
  window.addEventListener("pagehide", leave);
  window.addEventListener("pageshow", function (event) {
    if (event.persisted && leaving) {  // back from the browser's cache: poll again
      leaving = false;
      later(0);
    }
  });

  function tick() {
    if (leaving) {
      return;
    }
    inflight = new AbortController();
    fetch(url, {
      credentials: "same-origin",
      headers: { Accept: "application/json" },
      signal: inflight.signal
    })
      .then(function (response) {
        if (response.status === 401) {
          say("Signed out: sign in again to see live updates.");
          return null;
        }
        if (!response.ok) {
          throw new Error("HTTP " + response.status);
        }
        return response.json().then(function (data) {
          apply(data);
          later(every);
        });
      })
      .catch(function () {
        if (leaving) {
          return;  // cancelled on the way out: nothing to say
        }
        say("Live updates paused: trying again.");
        later(every * 3);
      });
  }

  later(every);
})();
