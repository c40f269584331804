// The inbox's live updates: ask the inbox's JSON every data-every milliseconds, add the
// notifications that are new and redraw those whose state changed (read, answered, relayed
// to the watch), with the same markup as the server's (_notification.html). Text goes in as
// text, never as HTML. Forms are plain forms to this origin, with the page's CSRF token. No
// library.
(function () {
  "use strict";
  var list = document.getElementById("notifications");
  if (!list) {
    return;
  }
  var feed = list.getAttribute("data-feed");
  var base = list.getAttribute("data-base");
  var csrf = list.getAttribute("data-csrf");
  var every = parseInt(list.getAttribute("data-every") || "5000", 10);
  var stamp = document.getElementById("updated");
  var count = document.getElementById("unread");
  var badge = document.getElementById("unread-badge");
  var empty = document.getElementById("empty");

  function say(text) {
    if (stamp) {
      stamp.textContent = text;
    }
  }

  function element(tag, className, text) {
    var node = document.createElement(tag);
    if (className) {
      node.className = className;
    }
    if (text) {
      node.textContent = text;
    }
    return node;
  }

  function form(action, fields, label, className) {
    var node = element("form", "inline");
    node.method = "post";
    node.action = action;
    var all = [["csrf_token", csrf]].concat(fields);
    all.forEach(function (pair) {
      var input = document.createElement("input");
      input.type = "hidden";
      input.name = pair[0];
      input.value = pair[1];
      node.appendChild(input);
    });
    var button = element("button", className, label);
    button.type = "submit";
    node.appendChild(button);
    return node;
  }

  function state(item) {
    return (item.read ? "read" : "unread") + ":" + (item.answer || "") + ":" +
      (item.relayed_at ? "relayed" : "");
  }

  function render(item) {
    var li = element("li", item.read ? "read" : "unread");
    li.id = "notification-" + item.id;
    li.setAttribute("data-state", state(item));
    li.appendChild(element("div", "title", item.title));
    if (item.text) {
      li.appendChild(element("p", "text", item.text));
    }
    var meta = element("div", "meta", item.created_at.slice(0, 16).replace("T", " ") +
      " UTC · " + item.label);
    if (item.relayed_at) {
      meta.appendChild(element("span", "relay", "· sent to your watch"));
    } else if (item.relay_to_wearable) {
      meta.appendChild(element("span", "relay", "· for your wearable: your phone app passes it on"));
    }
    li.appendChild(meta);
    var actions = element("div", "actions");
    var answer = base + "/" + item.id + "/answer";
    if (item.offer && !item.answer) {
      actions.appendChild(form(answer, [["outcome", "accepted"]], "Accept", "accept"));
      actions.appendChild(form(answer, [["outcome", "declined"]], "Decline", "decline"));
    }
    if (item.answer) {
      actions.appendChild(element("span", "answer", "You " + item.answer + " this offer."));
    }
    if (!item.read) {
      actions.appendChild(form(base + "/" + item.id + "/read", [], "Mark read", "mark-read"));
    }
    li.appendChild(actions);
    return li;
  }

  function apply(data) {
    var before = null;
    data.notifications.forEach(function (item) {  // newest first
      var fresh = render(item);
      var old = document.getElementById(fresh.id);
      if (old) {
        if (old.getAttribute("data-state") !== fresh.getAttribute("data-state")) {
          list.replaceChild(fresh, old);
        } else {
          fresh = old;
        }
      } else if (before) {
        list.insertBefore(fresh, before.nextSibling);
      } else {
        list.insertBefore(fresh, list.firstChild);
      }
      before = fresh;
    });
    if (count) {
      count.textContent = String(data.unread);
    }
    if (badge) {
      badge.textContent = String(data.unread);
      badge.hidden = data.unread === 0;
    }
    if (empty) {
      empty.hidden = data.notifications.length > 0;
    }
    say("Live · updated " + data.at.slice(11, 19) + " UTC");
  }

  window.bankiotPoll(feed, every, apply, say, "Signed out: sign in again to see new notifications.");
})();
