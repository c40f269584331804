// The branch kiosk page: shows the screen the gateway says, sends what the customer presses.
// No framework, no external network; text goes in with textContent only.
"use strict";

const POLL_MS = 500;

function show(id, visible) {
  document.getElementById(id).hidden = !visible;
}

function fill(list, items, make) {
  // Rebuilt only when the items change: a button under a finger must not be replaced.
  const key = JSON.stringify(items);
  if (list.dataset.key !== key) {
    list.dataset.key = key;
    list.replaceChildren(...items.map(make));
  }
}

function render(view) {
  for (const section of document.querySelectorAll(".screen")) {
    section.hidden = section.id !== "screen-" + view.screen;
  }
  if (view.screen === "ticket") {
    document.getElementById("ticket-number").textContent = view.ticket || "";
  }
  if (view.screen === "services") {
    fill(document.getElementById("services-list"), view.services, (name, index) => {
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = name;
      button.addEventListener("click", () => send({ action: "request", service: index }));
      return button;
    });
  }
  if (view.screen === "requested") {
    document.getElementById("requested-service").textContent = view.service || "";
  }
  const offers = view.screen === "offers" ? view.offers : [];
  fill(document.getElementById("offers-list"), offers, (offer, index) => {
    const item = document.createElement("li");
    const title = document.createElement("strong");
    title.textContent = offer.title;
    item.append(title, document.createTextNode(offer.text));
    if (offer.answer) {
      const answer = document.createElement("p");
      answer.className = "answer";
      answer.textContent = offer.answer === "accepted" ? "Accepted: we will be in touch." : "Declined.";
      item.append(answer);
    } else {
      const choices = document.createElement("div");
      choices.className = "actions";
      for (const [action, label, style] of [
        ["accept", "Accept", ""],
        ["decline", "No, thanks", "secondary"],
      ]) {
        const button = document.createElement("button");
        button.type = "button";
        button.textContent = label;
        if (style) {
          button.className = style;
        }
        button.addEventListener("click", () => send({ action: action, offer: index }));
        choices.append(button);
      }
      item.append(choices);
    }
    return item;
  });
  if (view.screen === "offers") {
    show("offers-unavailable", !view.offers_available);
    show("offers-none", view.offers_available && offers.length === 0);
  }
  if (view.screen === "pairing") {
    const code = view.pairing_code;
    document.getElementById("pairing-code").textContent = code || "";
    show("pairing-code", Boolean(code));
    show("pairing-help", Boolean(code));
    show("pairing-unavailable", !code);
  }
  show("status-online", view.online);
  show("status-offline", !view.online);
  document.body.dataset.screen = view.screen;
}

function say(text) {
  const message = document.getElementById("message");
  message.textContent = text || "";
  message.hidden = !text;
}

async function send(body) {
  try {
    const response = await fetch("/api/action", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    const answer = await response.json();
    if (response.ok) {
      say("");
      render(answer);
    } else if (answer.view) {
      say(response.status === 409 ? "" : answer.error);
      render(answer.view);
    }
  } catch (error) {
    say("The kiosk is not responding. Please ask at the counter.");
  }
}

async function poll() {
  try {
    const response = await fetch("/api/state", { cache: "no-store" });
    if (response.ok) {
      render(await response.json());
    }
  } catch (error) {
    // The gateway is restarting: keep the last screen and try again.
  }
  setTimeout(poll, POLL_MS);
}

document.addEventListener("DOMContentLoaded", () => {
  for (const button of document.querySelectorAll("button[data-action]")) {
    button.addEventListener("click", () => send({ action: button.dataset.action }));
  }
  poll();
});
