"""Fleet management: branches and their devices (inventory, configuration, commands).

``init_app(app)`` registers the inventory API (``GET /api/fleet/devices``).
"""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Install the fleet inventory API on ``app``."""
    # Imported here: other areas import ``cloud.fleet.models``, and the views import theirs.
    from cloud.fleet import views

    app.register_blueprint(views.bp)
