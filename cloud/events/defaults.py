"""The rules shipped with bankiot, in the same TOML as operations' own files (``rules``).

They run unless a file in the rules folder declares a rule with the same id (which then
replaces it; to switch one off, replace it with a rule whose ``on`` names a kind no device
sends). They are the seed's inbound requests: a wearable's button asks for a call-back, a
check-in at a kiosk takes a queue ticket; both become service requests branch staff see.
A customer seen at a partner merchant's beacon hands over to risk-aware shopping
(``cloud.apps.shopping``, action ``app``): only there (``at = "partner"``: an enter whose
batch reports a partner merchant's beacon, not every enter at a branch), and only for a
customer's wearable (it names a purpose: the beacon's own presence, a stranger's phone are
not processed, only counted).
"""

from __future__ import annotations

SOURCE = "(shipped defaults)"

TEXT = """
[[rule]]
id = "inbound-callback"
version = 1
description = "A customer presses their wearable's button: branch staff call them back"
# Where the button was pressed is presence in a branch (ingest already needs `activity`
# to store the press at all).
purpose = "presence_branch"
on = "button"
cooldown_minutes = 10

[[rule.actions]]
do = "callback"
message = "The customer pressed their wearable's button and asks to be called back"

[[rule]]
id = "checkin-ticket"
version = 1
description = "A customer checks in at a kiosk: a queue ticket for branch staff"
purpose = "presence_branch"
on = "kiosk_checkin"
cooldown_minutes = 5

[[rule.actions]]
do = "ticket"
message = "Checked in at the kiosk"

[[rule]]
id = "partner-shopping"
version = 2
description = "A customer is seen at a partner merchant's beacon: risk-aware shopping decides"
purpose = "presence_partner"
on = "enter"
at = "partner"
cooldown_minutes = 240

[[rule.actions]]
do = "app"
message = "Risk-aware shopping (cloud.apps.shopping) decides an offer or a warning"
"""
