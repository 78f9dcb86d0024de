from pathlib import Path

import pytest

from drip.config import DEFAULT_DATABASE_URL, load_settings, redact_url
from drip.core.errors import ConfigError


def test_defaults(tmp_path: Path) -> None:
    settings = load_settings(environ={}, cwd=tmp_path)
    assert settings.database_url == DEFAULT_DATABASE_URL == "sqlite:///drip.db"
    assert settings.smtp_url is None
    assert settings.origin("database_url") == "default"


def test_option_beats_environment_beats_file_beats_default(tmp_path: Path) -> None:
    (tmp_path / "drip.toml").write_text(
        'base_url = "https://file.example.com"\nreply_address = "file@example.com"\n'
        'database_url = "sqlite:///file.db"\n'
    )
    environ = {"DRIP_BASE_URL": "https://env.example.com", "DRIP_DATABASE_URL": "sqlite:///env.db"}
    settings = load_settings({"database_url": "sqlite:///option.db"}, environ=environ, cwd=tmp_path)
    assert settings.database_url == "sqlite:///option.db"
    assert settings.base_url == "https://env.example.com"
    assert settings.reply_address == "file@example.com"
    assert settings.origin("base_url") == "environment variable DRIP_BASE_URL"
    assert settings.origin("reply_address") == str(tmp_path / "drip.toml")


def test_explicit_config_file(tmp_path: Path) -> None:
    path = tmp_path / "elsewhere.toml"
    path.write_text('smtp_url = "smtp://relay.example.com:587?starttls=true"\n')
    settings = load_settings(config_file=path, environ={}, cwd=tmp_path)
    assert settings.smtp_url == "smtp://relay.example.com:587?starttls=true"


def test_missing_explicit_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(config_file=tmp_path / "nope.toml", environ={}, cwd=tmp_path)


def test_unknown_key_in_file_suggests_the_right_one(tmp_path: Path) -> None:
    (tmp_path / "drip.toml").write_text('databse_url = "sqlite:///x.db"\n')
    with pytest.raises(ConfigError, match="did you mean 'database_url'"):
        load_settings(environ={}, cwd=tmp_path)


def test_bad_toml_is_reported_with_the_file(tmp_path: Path) -> None:
    (tmp_path / "drip.toml").write_text("base_url = \n")
    with pytest.raises(ConfigError, match="drip.toml: not valid TOML"):
        load_settings(environ={}, cwd=tmp_path)


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("DRIP_DATABASE_URL", "mysql://root@localhost/drip", "'mysql' databases are not supported"),
        ("DRIP_DATABASE_URL", "not a url", "not a database URL"),
        ("DRIP_SMTP_URL", "http://relay.example.com", "must start with smtp:// or smtps:// or file://"),
        ("DRIP_SMTP_URL", "smtp://relay.example.com:99999", "bad port"),
        ("DRIP_BASE_URL", "drip.example.com", "must start with http://"),
        ("DRIP_BASE_URL", "https://drip.example.com/?x=1", "the site's address only"),
        ("DRIP_BASE_URL", "https://x.example/a>, <https://evil.example/b", "the site's address only"),
        ("DRIP_BASE_URL", "http://drip.example.com", "must use https://"),
        ("DRIP_SECRET_KEY", "short", "at least 32 characters"),
        ("DRIP_SECRET_KEY", "a" * 32, "this one has 1 different characters"),
        ("DRIP_SECRET_KEY", "abcdefghijklmnopqrstuvwxyz012345" + "z" * 12, "one character makes up"),
        ("DRIP_ADMIN_PASSWORD", " " * 12, "this one is blank"),
        ("DRIP_ADMIN_PASSWORD", "aaaaaaaaaaab", "this one has 2 different characters"),
        ("DRIP_INBOX_PASSWORD", "password", "this one has 8"),
        ("DRIP_DATABASE_URL", "sqlite://", "lives in memory and keeps nothing"),
        ("DRIP_DATABASE_URL", "sqlite:///", "lives in memory and keeps nothing"),
        ("DRIP_DATABASE_URL", "sqlite:///:memory:", "lives in memory and keeps nothing"),
        (
            "DRIP_DATABASE_URL",
            "sqlite:///missing/dir/x.db",
            "the folder 'missing/dir' does not exist; create it first",
        ),
        ("DRIP_TRUSTED_PROXIES", "-1", "must be between 0 and 10"),
        ("DRIP_REPLY_ADDRESS", "comms.example.com", "not a valid email"),
        ("DRIP_INBOX_URL", "pop3://mail.example.com", "must start with imap://"),
        ("DRIP_LISTEN", "8000", "not an address to listen on"),
        ("DRIP_WEB_THREADS", "0", "must be between 1 and 64"),
        ("DRIP_WEB_THREADS", "many", "is not a whole number"),
        ("DRIP_LISTEN", "0.0.0.0:70000", "not an address to listen on"),
    ],
)
def test_bad_values_name_the_setting_and_its_source(
    tmp_path: Path, variable: str, value: str, message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={variable: value}, cwd=tmp_path)
    text = str(caught.value)
    setting = variable.removeprefix("DRIP_").lower()
    assert f"setting {setting} (from environment variable {variable})" in text
    assert message in text


def test_postgres_urls_get_the_shipped_driver(tmp_path: Path) -> None:
    settings = load_settings(environ={"DRIP_DATABASE_URL": "postgres://u@db/drip"}, cwd=tmp_path)
    assert settings.database_url == "postgresql+psycopg://u@db/drip"


def test_secrets_stay_out_of_repr_and_messages(tmp_path: Path) -> None:
    key = "Kq7-vX2pL9sWz4Rt8Yb1Nm6Hc3Jd5Fg0Ae"
    settings = load_settings(
        environ={"DRIP_SECRET_KEY": key, "DRIP_SMTP_URL": "smtp://user:hunter2@relay.example.com"},
        cwd=tmp_path,
    )
    assert key not in repr(settings)
    assert redact_url(settings.smtp_url or "") == "smtp://user:***@relay.example.com"
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={"DRIP_SMTP_URL": "smtp://user:hunter2@relay.example.com:0x"}, cwd=tmp_path)
    assert "hunter2" not in str(caught.value)


def test_plain_http_is_for_this_machine(tmp_path: Path) -> None:
    for url in ("http://127.0.0.1:8000", "http://localhost:5000/"):
        assert load_settings(environ={"DRIP_BASE_URL": url}, cwd=tmp_path).base_url == url.rstrip("/")


def test_where_the_web_pages_listen(tmp_path: Path) -> None:
    def listen(**environ: str) -> tuple[str, int]:
        return load_settings(environ=environ, cwd=tmp_path).listen_address()

    assert listen() == ("127.0.0.1", 8000)
    assert listen(DRIP_BASE_URL="http://localhost:5000") == ("localhost", 5000)
    # A public address is a proxy's to answer; drip listens behind it.
    assert listen(DRIP_BASE_URL="https://drip.example.com") == ("127.0.0.1", 8000)
    assert listen(DRIP_BASE_URL="https://drip.example.com", DRIP_LISTEN="0.0.0.0:9000") == ("0.0.0.0", 9000)
    assert listen(DRIP_LISTEN="[::1]:8080") == ("::1", 8080)


def test_web_threads_follow_the_database_unless_set(tmp_path: Path) -> None:
    def threads(**environ: str) -> int:
        return load_settings(environ=environ, cwd=tmp_path).web_thread_count()

    assert threads() == 1  # SQLite: writes take turns; one thread does the most
    assert threads(DRIP_DATABASE_URL="postgresql+psycopg://drip@db.internal/drip") == 8
    assert threads(DRIP_WEB_THREADS="4") == 4
