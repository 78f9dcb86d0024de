"""The owners' dashboard: off without a password, behind one with it, and never a writer."""

from __future__ import annotations

import base64
import dataclasses

import pytest

from conftest import ROOT
from drip.cli import main
from drip.config import ConfigError, load_settings
from drip.web.app import create_app
from drip.web.gate import FailureLimit, password_matches
from walked import AS_OF, Walked

PASSWORD = "correct horse battery staple"


@pytest.fixture
def client_for():
    """Make a test client of the web app on a database; its connections are closed afterwards."""
    apps = []

    def make(url: str, password: str | None = PASSWORD, **more):
        settings = dataclasses.replace(
            load_settings(environ={}), database_url=url, admin_password=password, **more
        )
        apps.append(create_app(settings, clock=lambda: AS_OF))
        return apps[-1].test_client()

    yield make
    for app in apps:
        app.extensions["drip"].database.close()


def basic(password: str, user: str = "owner") -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


@pytest.mark.parametrize("path", ["/admin", "/admin/", "/admin/cohorts/test-cohort"])
def test_without_a_password_set_the_dashboard_is_off(walked: Walked, client_for, path: str) -> None:
    answer = client_for(walked.url, None).get(path, headers=basic(PASSWORD))
    assert answer.status_code == 403 and "WWW-Authenticate" not in answer.headers
    assert b"DRIP_ADMIN_PASSWORD" in answer.data and b"Test cohort" not in answer.data


def test_the_dashboard_asks_for_its_password(walked: Walked, client_for) -> None:
    client = client_for(walked.url)
    for headers in ({}, basic("wrong password!"), basic(""), {"Authorization": "Bearer " + PASSWORD}):
        answer = client.get("/admin", headers=headers)
        assert answer.status_code == 401 and answer.headers["WWW-Authenticate"].startswith("Basic ")
        assert b"Test cohort" not in answer.data
    assert client.get("/admin/cohorts/test-cohort", headers=basic(PASSWORD[:-1])).status_code == 401


def test_the_dashboard_lists_cohorts_and_opens_their_reports(walked: Walked, client_for) -> None:
    client = client_for(walked.url)
    page = client.get("/admin", headers=basic(PASSWORD, user="anyone"))
    assert page.status_code == 200 and page.headers["Cache-Control"] == "no-store"
    html = page.get_data(as_text=True)
    assert "Test cohort" in html and "4 participants" in html and "2/4" in html and "2 overdue" in html
    assert 'href="/admin/cohorts/test-cohort"' in html
    assert "2 bounced" in html and "failed" in html
    report = client.get("/admin/cohorts/test-cohort", headers=basic(PASSWORD))
    assert report.status_code == 200 and b"<svg" in report.data and b'href="/admin"' in report.data
    assert client.get("/admin/cohorts/nope", headers=basic(PASSWORD)).status_code == 404


def test_the_dashboard_changes_nothing(walked: Walked, client_for) -> None:
    client = client_for(walked.url)
    for path in ("/admin", "/admin/cohorts/test-cohort"):
        for method in (client.post, client.put, client.delete):
            assert method(path, headers=basic(PASSWORD)).status_code == 405


def test_wrong_passwords_slow_the_guesser_and_never_lock_out_the_owner(walked: Walked, client_for) -> None:
    client = client_for(walked.url)
    for _ in range(5):
        assert client.get("/admin", headers=basic("guess number n")).status_code == 401
    refused = client.get("/admin", headers=basic("guess number six"))
    assert refused.status_code == 429 and 0 < int(refused.headers["Retry-After"]) <= 301
    assert client.get("/admin", headers=basic(PASSWORD)).status_code == 200, "the right password goes through"
    other = client.get("/admin", headers=basic("a guess"), environ_base={"REMOTE_ADDR": "192.0.2.9"})
    assert other.status_code == 401, "only the guessing address waits"


def test_x_forwarded_for_counts_only_behind_trusted_proxies(walked: Walked, client_for) -> None:
    """Behind one proxy every visitor has the proxy's address; without the setting the header is a lie."""
    client = client_for(walked.url)
    for n in range(6):
        forwarded = {**basic("wrong"), "X-Forwarded-For": f"203.0.113.{n}"}
        status = client.get("/admin", headers=forwarded, environ_base={"REMOTE_ADDR": "10.0.0.2"}).status_code
    assert status == 429, "X-Forwarded-For was believed without DRIP_TRUSTED_PROXIES"
    trusting = client_for(walked.url, trusted_proxies=1)
    for n in range(6):
        forwarded = {**basic("wrong"), "X-Forwarded-For": f"198.51.100.7, 203.0.113.{n}"}
        status = trusting.get(
            "/admin", headers=forwarded, environ_base={"REMOTE_ADDR": "10.0.0.2"}
        ).status_code
    assert status == 401, "each client behind the proxy is counted on its own"


def test_failure_limit_forgets_old_failures() -> None:
    moment = [0.0]
    limit = FailureLimit(limit=3, window=60, clock=lambda: moment[0])
    for _ in range(3):
        limit.fail("a")
    assert limit.wait("a") == 60 and limit.wait("b") == 0
    moment[0] = 59.0
    assert limit.wait("a") == pytest.approx(1.0)
    moment[0] = 60.5
    assert limit.wait("a") == 0
    limit.fail("a")
    limit.forgive("a")
    assert limit.wait("a") == 0


def test_password_comparison() -> None:
    assert password_matches("pässwörd ünïcode", "pässwörd ünïcode")
    assert not password_matches("pässwörd ünïcode", "pässwörd ünïcod")
    assert not password_matches("", PASSWORD)


def test_the_password_is_a_setting_of_its_own(runner) -> None:
    with pytest.raises(ConfigError, match="at least 12 characters"):
        load_settings(environ={"DRIP_ADMIN_PASSWORD": "short"})
    settings = load_settings(environ={"DRIP_ADMIN_PASSWORD": PASSWORD})
    assert settings.admin_password == PASSWORD and PASSWORD not in repr(settings)
    result = runner.invoke(main, ["--admin-password", PASSWORD, "status"])
    assert result.exit_code == 2 and "No such option" in result.output, "never on a command line"
    assert (ROOT / "README.md").read_text(encoding="utf-8").count("DRIP_ADMIN_PASSWORD") >= 1
