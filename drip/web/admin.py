"""The owners' dashboard at /admin: every cohort's progress, and each cohort's report. Read-only.

It is off unless an operator sets DRIP_ADMIN_PASSWORD; then it asks for that
password through ``drip.web.gate`` (HTTP Basic, over HTTPS in front of drip, as
the README says).
"""

from __future__ import annotations

from flask import Blueprint, Response, abort, request

from drip.config import Settings
from drip.owners import documents, progress, texts
from drip.web.context import site
from drip.web.gate import Gate


def make_blueprint(settings: Settings) -> Blueprint:
    """Return the dashboard: refused entirely while DRIP_ADMIN_PASSWORD is unset."""
    blueprint = Blueprint("admin", __name__, url_prefix="/admin")
    gate = Gate(settings.admin_password, "drip dashboard") if settings.admin_password else None

    @blueprint.before_request
    def _guard() -> Response | None:
        if gate is None:
            abort(403, "The dashboard is off. An operator turns it on by setting DRIP_ADMIN_PASSWORD.")
        return gate.check()

    @blueprint.after_request
    def _private(response: Response) -> Response:
        response.headers["Cache-Control"] = "no-store"
        response.headers["X-Robots-Tag"] = "noindex"
        return response

    @blueprint.get("")
    @blueprint.get("/")
    def dashboard() -> str:
        moment = site().now()
        cohorts = texts.cohort_status(site().database.store(), None, moment, names=0)
        return documents.render_page("admin.html", cohorts=cohorts, now=moment)

    @blueprint.get("/cohorts/<slug>")
    def cohort_report(slug: str) -> str:
        with site().database.store().reading() as conn:
            found = progress.read_progress(conn, slug, site().now())
        if found is None:
            abort(404, f"No cohort {slug!r} here.")
        # "What they said" is searched here, on the server: the report runs no script.
        query = request.args.get("said", "")[:200]
        return documents.report_html(found, link_back="/admin", query=query)

    return blueprint
