"""Bank data in: statements and transactions from the bank's own systems.

Importers, one module per format, each a pure function from bytes to the common parsed
form (``parsed``) or one ``BankImportError`` naming file, element and line: ``camt``
(ISO 20022 camt.053 and camt.052, .001.02 to .001.08, read with defusedxml), ``swift``
(MT940 through the mt-940 library), ``obie`` (UK Open Banking v3.1 accounts, balances,
transactions), ``csvmap`` (CSV with a column mapping); ``formats`` picks one. ``service``
stores a file in one transaction, idempotently (``keys``); ``models`` are the tables.

``init_app(app)`` registers the API (``views``): ``POST /api/bank/statements``,
``GET /api/bank/accounts``, ``GET /api/bank/accounts/<id>/transactions``, for cloud
operations. ``bankiot bank import FILE...`` (``cli``) imports on the cloud's machine.

Settings read from the app config (defaults in brackets):

| key | meaning |
|---|---|
| ``BANK_MAX_UPLOAD_BYTES`` [32 MiB] | the largest upload ``POST /api/bank/statements`` takes |
"""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Install the bank data API on ``app``."""
    from cloud.bank import views

    app.register_blueprint(views.bp)
