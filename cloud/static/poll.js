// What the pages' live updates share: ask a JSON endpoint every `every` milliseconds and
// hand each answer to the page's `apply`. Leaving the page (a form sent, a link followed,
// the tab closed) stops the polling and cancels a request in flight: after "Sign out", a
// poll the server answered after the session ended would otherwise come back 401 to a page
// that is going away. No library.
window.bankiotPoll = function (url, every, apply, say, signedOut) {
  "use strict";
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
          say(signedOut);
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
};
