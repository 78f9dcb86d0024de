"""The owners' dashboard at /admin: every cohort's progress, and each cohort's report. Read-only.

It is off unless an operator sets DRIP_ADMIN_PASSWORD; then it asks for that
password through ``drip.web.gate`` (HTTP Basic, over HTTPS in front of drip, as
the README says).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, abort, request

from drip.config import Settings
from drip.owners import documents, progress, texts
from drip.web.gate import Gate


def add_dashboard(
    app: Flask, settings: Settings, store: Callable[[], Any], now: Callable[[], dt.datetime]
) -> None:
    """Serve /admin on ``app``: refused entirely while DRIP_ADMIN_PASSWORD is unset."""
    gate = Gate(settings.admin_password, "drip dashboard") if settings.admin_password else None

    def dashboard_page() -> bool:
        return request.path == "/admin" or request.path.startswith("/admin/")

    @app.before_request
    def _guard() -> Response | None:
        if not dashboard_page():
            return None
        if gate is None:
            abort(403, "The dashboard is off. An operator turns it on by setting DRIP_ADMIN_PASSWORD.")
        return gate.check()

    @app.after_request
    def _private(response: Response) -> Response:
        if dashboard_page():
            response.headers["Cache-Control"] = "no-store"
            response.headers["X-Robots-Tag"] = "noindex"
        return response

    @app.get("/admin")
    def dashboard() -> str:
        moment = now()
        cohorts = texts.cohort_status(store(), None, moment, names=0)
        return documents.render_page("admin.html", cohorts=cohorts, now=moment)

    @app.get("/admin/cohorts/<slug>")
    def cohort_report(slug: str) -> str:
        with store().reading() as conn:
            found = progress.read_progress(conn, slug, now())
        if found is None:
            abort(404, f"No cohort {slug!r} here.")
        return documents.report_html(found, link_back="/admin")
