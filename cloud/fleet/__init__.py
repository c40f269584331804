"""Fleet management: branches and their devices (inventory, configuration, commands).

``init_app(app)`` registers the inventory API (``GET /api/fleet/devices``), configuration
and commands (``/api/fleet/devices/<id>/config``, ``/api/fleet/config``,
``/api/fleet/commands``, ``/api/fleet/command-groups/<id>``) and the alerts
API (``GET /api/fleet/alerts``, ``POST /api/fleet/alerts/<id>/ack``; ``alerts.check_alerts``
keeps the alerts up to date, ``alert_rules`` decides) and the kiosk events of the branches
(``GET /api/fleet/kiosk-events``) and the wearables bound to branches
(``PUT``/``DELETE /api/fleet/branches/<id>/wearables/<address>``, operations only) and the
beacons of branches and partner merchants (``/api/fleet/beacons``, ``/api/fleet/merchants``)
and replacing and decommissioning devices (``POST /api/fleet/devices/<id>/replace``,
``.../decommission``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # not at run time: ``cloud.fleet.client`` is used without Flask (field)
    from flask import Flask


def init_app(app: Flask) -> None:
    """Install the fleet inventory API on ``app``."""
    # Imported here: other areas import ``cloud.fleet.models``, and the views import theirs.
    from cloud.fleet import views

    app.register_blueprint(views.bp)
    # Signed releases: trusted keys read now, so a bad key file stops start-up.
    from cloud.fleet import release_views

    release_views.init_app(app)
    # Configuration and commands; fleet refusals become one-line JSON errors.
    from apiflask import APIFlask, HTTPError

    from cloud.db import session
    from cloud.fleet import control_views
    from cloud.fleet.errors import FleetError

    def refused(error: FleetError) -> Any:
        session().rollback()
        assert isinstance(app, APIFlask)
        return app.error_callback(HTTPError(error.status, error.message))

    app.register_error_handler(FleetError, refused)
    app.register_blueprint(control_views.bp)
    from cloud.fleet import rollout_views

    app.register_blueprint(rollout_views.bp)
    # Alerts: thresholds read now, so a bad setting stops start-up with one line.
    from cloud.fleet import alert_metrics, alert_views
    from cloud.fleet.alert_rules import Thresholds

    app.extensions["bankiot.alert_thresholds"] = Thresholds.from_config(app.config)
    app.register_blueprint(alert_views.bp)
    alert_metrics.init_app(app)
    from cloud.fleet import kiosk_views

    app.register_blueprint(kiosk_views.bp)
    from cloud.fleet import bindings_views

    app.register_blueprint(bindings_views.bp)
    from cloud.fleet import replacement_views  # replacing and decommissioning devices

    app.register_blueprint(replacement_views.bp)
    # Beacons of branches and merchants; an enrolling gateway starts with its branch's.
    from cloud.fleet import beacon_views, beacons
    from cloud.identity.runtime import set_initial_config

    app.register_blueprint(beacon_views.bp)
    set_initial_config(app, lambda device: beacons.initial_config(session(), device))
