"""The customer's inbox: notifications and app or wearable offers, actually delivered.

What decides a notification stages it in its own transaction, so a notification exists
exactly when its decision was committed, once: the rule worker's ``notify`` and ``offer``
actions (``cloud.events.actions``), risk-aware shopping and holding alerts
(``cloud.apps``), and app or wearable campaigns (``offers``). After the commit, its ``Note``
goes to the push hook (``push.NotificationChannel``). The customer reads the inbox on the
customer pages (``/customer/notifications``, and its JSON for live updates and a phone app:
``cloud.customers.views``).

| module | job |
|---|---|
| ``models`` | ``notifications``, ``campaign_sends`` |
| ``push`` | the post-commit push hook (``NotificationChannel``), ``LoggingChannel`` by default |
| ``inbox`` | stage, list, mark read, answer an offer (object-level: a customer's own only) |
| ``offers`` | app and wearable campaigns: a rule's offer, and a send to the audience |

A ``wearable`` notification cannot go to the wearable itself: the wearables here are BLE
advertisers, which send and never receive. The app shows it and marks it for relay
(``relay_to_wearable``): a smartwatch gets its notifications from the phone app it is
paired with (``docs/customers.md``).
"""
