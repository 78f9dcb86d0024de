"""Each executive in their own language: tags, template variants, dates, fixed strings, link pages.

End to end: a cohort with readers of every shipped language is started and sent through a real SMTP
server on loopback (SQLite and PostgreSQL); each email is checked for its language's subject, dates,
button, footer, Content-Language, lang attribute and calendar entry, and its pages for their words.
"""

import datetime as dt
import re
import tomllib
from email import message_from_bytes, policy
from html import unescape
from pathlib import Path

import icalendar
import jinja2
import pytest
from click.testing import CliRunner
from flask.testing import FlaskClient
from test_links import settings, token

from conftest import COHORT_TOML, EMAILS, PROGRAM, CohortFactory, SMTPServer
from drip.cli import main
from drip.core.errors import CohortError
from drip.core.languages import (
    SHIPPED_LANGUAGES,
    day_count,
    display_name,
    fallbacks,
    language_tag,
    load_strings,
    long_date,
    short_date,
)
from drip.core.render import Templates, fixed_strings
from drip.core.tokens import Action
from drip.core.values import InvalidValue
from drip.core.wording import Verdict, read
from drip.launch import enrol
from drip.launch.cohort import load_cohort
from drip.storage.store import Store
from drip.web.app import create_app

MARCH_1 = dt.date(2027, 3, 1)
ROSTER = """\
email,name,timezone,Language,objective
ana@example.com,Ana Ruiz,America/Mexico_City,es-MX,ventas
ben@example.com,伊藤 勉,Asia/Tokyo,ja,営業
cleo@example.com,Cleo Hart,Europe/London,,sales
dora@example.com,Dora Klein,Europe/Berlin,DE,Vertrieb
emil@example.com,Émile Roux,America/Montreal,fr-ca,ventes
flor@example.com,Flor Lima,America/Sao_Paulo,pt-BR,vendas
"""
STEPS = sorted({path.name.split(".")[0] for path in PROGRAM.glob("*.html")} - {"layout"})


# --- tags, dates and counts --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "tag"),
    [("de", "de"), ("DE", "de"), ("fr-ca", "fr-CA"), ("fr_CA", "fr-CA"), (" ja ", "ja"),
     ("zh-hant-tw", "zh-Hant-TW"), ("es-419", "es-419")],
)  # fmt: skip
def test_a_tag_is_read_in_its_canonical_form(given: str, tag: str) -> None:
    assert language_tag(given) == tag


@pytest.mark.parametrize("given", ["english", "xx", "en-XX", "tlh", "de DE", "", "d", "ja-JP-x-kana!"])
def test_what_is_not_a_language_drip_can_write_dates_in_is_refused_with_the_fix(given: str) -> None:
    with pytest.raises(InvalidValue, match="like de, ja, es-MX or fr-CA"):
        language_tag(given)


def test_a_tag_falls_back_through_its_shorter_forms() -> None:
    assert fallbacks("zh-Hant-TW") == ("zh-Hant-TW", "zh-Hant", "zh")
    assert fallbacks("de") == ("de",)


@pytest.mark.parametrize(
    ("tag", "long", "short", "one", "three"),
    [
        ("en-GB", "Monday 1 March", "1 March", "1 day", "3 days"),
        ("en-US", "Monday, March 1", "March 1", "1 day", "3 days"),
        ("de", "Montag, 1. März", "1. März", "1 Tag", "3 Tage"),
        ("fr", "lundi 1 mars", "1 mars", "1\xa0jour", "3\xa0jours"),  # a no-break space, as French sets it
        ("es-MX", "lunes, 1 de marzo", "1 de marzo", "1 día", "3 días"),
        ("ja", "3月1日月曜日", "3月1日", "1日", "3日"),
    ],
)
def test_dates_and_counts_are_written_as_each_language_writes_them(
    tag: str, long: str, short: str, one: str, three: str
) -> None:
    assert (long_date(MARCH_1, tag), short_date(MARCH_1, tag)) == (long, short)
    assert (day_count(1, tag), day_count(3, tag)) == (one, three)


# --- which template a reader gets --------------------------------------------------------------


@pytest.fixture
def program(tmp_path: Path) -> Path:
    folder = tmp_path / "program"
    folder.mkdir()
    body = '{% block subject %}{{ _("Hello") }} {{ goal.deadline|shortdate }}{% endblock %}<p>Body</p>'
    (folder / "step.html").write_text(body)
    (folder / "step.fr.html").write_text(body.replace('_("Hello")', "'Bonjour'"))
    (folder / "step.fr-CA.html").write_text(body.replace('_("Hello")', "'Allô'"))
    (folder / "strings.de.toml").write_text('"Hello" = "Hallo"\n')
    return folder


@pytest.mark.parametrize(
    ("reader", "name", "language", "fallback"),
    [
        ("fr-CA", "step.fr-CA", "fr-CA", False),  # the exact tag first
        ("fr-BE", "step.fr", "fr-BE", False),  # then its base language, dates the Belgian way
        ("en-US", "step", "en-US", False),  # the program's own language, in the reader's region
        ("pt-BR", "step", "en-GB", True),  # no Portuguese: the program's, all of it
        (None, "step", "en-GB", False),
    ],
)
def test_a_reader_gets_the_closest_template_and_the_email_is_in_its_language(
    program: Path, reader: str | None, name: str, language: str, fallback: bool
) -> None:
    choice = Templates(program, "en-GB").choose("step", reader)
    assert (choice.name, choice.language, choice.fallback) == (name, language, fallback)


def test_subject_dates_and_fixed_strings_follow_the_email_language(program: Path) -> None:
    templates = Templates(program, "en-GB")
    context = {"goal": {"deadline": MARCH_1}}
    assert templates.render("step", context, "fr-CA").subject == "Allô 1 mars"
    assert templates.render("step", context, "en-US").subject == "Hello March 1"
    # German has strings but no template: the email stays wholly in the program's English
    rendered = templates.render("step", context, "de")
    assert (rendered.subject, rendered.language) == ("Hello 1 March", "en-GB")
    (program / "step.de.html").write_text((program / "step.html").read_text())
    templates.CHECK_EVERY = 0  # a variant added while drip runs is taken up
    assert templates.render("step", context, "de").subject == "Hallo 1. März"


def test_a_translation_in_html_is_text_and_its_values_are_escaped(tmp_path: Path) -> None:
    (tmp_path / "step.html").write_text(
        '{% block subject %}x{% endblock %}<p>{{ _("Run by {who}.", who=who) }}</p>'
    )
    (tmp_path / "strings.de.toml").write_text('"Run by {who}." = "<b>Betreut</b> von {who}."\n')
    (tmp_path / "step.de.html").write_text((tmp_path / "step.html").read_text())
    html = Templates(tmp_path).render("step", {"who": "<script>x</script>"}, "de").html
    assert "&lt;b&gt;Betreut&lt;/b&gt; von &lt;script&gt;x&lt;/script&gt;." in html


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('"Hi {name}" = "Hallo {nom}"', "may use only {name}, as the English does"),
        ('"Hi {name}" = 3', "must be text in quotes"),
        ('"Hi {name}" = "Hallo {name.__class__}"', "may use only {name}"),
        ('"Hi {0}" = "Hallo"', "braces may only hold a {name}"),
        ('"Hi" = ', "not valid TOML"),
    ],
)
def test_a_strings_file_with_a_mistake_is_refused_naming_file_and_string(
    tmp_path: Path, content: str, message: str
) -> None:
    (tmp_path / "strings.de.toml").write_text(content + "\n")
    with pytest.raises(CohortError) as caught:
        load_strings(tmp_path, "de-AT")
    assert "strings.de.toml" in str(caught.value) and message in str(caught.value)


def test_the_exact_tag_overrides_its_base_language(tmp_path: Path) -> None:
    (tmp_path / "strings.de.toml").write_text('"Hello" = "Hallo"\n"Bye" = "Tschüss"\n')
    (tmp_path / "strings.de-AT.toml").write_text('"Hello" = "Servus"\n')
    strings = load_strings(tmp_path, "de-AT")
    assert (strings.get("Hello"), strings.get("Bye"), strings.get("Unknown")) == (
        "Servus",
        "Tschüss",
        "Unknown",
    )


# --- what ships -------------------------------------------------------------------------------


def _statements(source: str) -> list[str]:
    return [" ".join(tag.split()) for tag in re.findall(r"{%.*?%}", source, re.S)]


@pytest.mark.parametrize("language", [tag for tag in SHIPPED_LANGUAGES if tag != "en"])
def test_every_shipped_language_has_every_step_with_the_same_logic(language: str) -> None:
    for step in STEPS:
        english = (PROGRAM / f"{step}.html").read_text()
        variant = PROGRAM / f"{step}.{language}.html"
        assert variant.is_file(), f"{variant.name} is missing"
        jinja2.Environment().parse(variant.read_text())
        assert _statements(variant.read_text()) == _statements(english), (
            f"{variant.name} differs in its logic"
        )


@pytest.mark.parametrize("language", [tag for tag in SHIPPED_LANGUAGES if tag != "en"])
def test_every_fixed_string_the_program_and_drip_use_is_translated(language: str) -> None:
    program = load_strings(PROGRAM, language)
    wanted = fixed_strings(PROGRAM) | load_cohort_program().reader_texts
    assert sorted(wanted - set(program.table)) == []
    # the titles keep the stage name before an ASCII colon: the escalation names the stage by it
    for goal in load_cohort_program().goals:
        assert program.get(goal.title).split(":")[0] == goal.title.split(":")[0]
    ours = load_strings(Path(__import__("drip.core").core.__file__).parent, language)
    english = set(ours.table)
    assert len(english) >= 50, "drip's own pages, calendar entries and reply subjects"


def load_cohort_program():
    from drip.core.program import load_program

    return load_program(PROGRAM)


@pytest.mark.parametrize("language", SHIPPED_LANGUAGES)
def test_the_word_each_language_is_told_to_reply_is_read_as_done(language: str) -> None:
    said = load_strings(PROGRAM, language).get('Reply "done"') if language != "en" else 'Reply "done"'
    word = re.search(r'[„“"«「]\s*([^“”"»」]+?)\s*[“”"»」]', said)
    assert word, said
    for reply in (word[1], f"{word[1]}.", f"{word[1]}\n\n-- \nSent from my phone"):
        assert read(reply).verdict is Verdict.DONE, (language, reply)


# --- drip start ---------------------------------------------------------------------------------


def test_start_refuses_an_unknown_language_in_roster_or_cohort_naming_row_and_fix(
    make_cohort: CohortFactory, runner: CliRunner, tmp_path: Path
) -> None:
    folder = make_cohort(ROSTER.replace(",DE,", ",Deutsch,"), COHORT_TOML + 'language = "tlh"\n')
    result = runner.invoke(main, ["--database-url", f"sqlite:///{tmp_path / 'x.db'}", "start", str(folder)])
    assert result.exit_code != 0
    assert (
        "roster.csv, row 5, column 'language': 'Deutsch' is not a language tag; write one like de"
        in result.output
    )
    assert "cohort.toml, line 9, language: 'tlh' is not a language drip knows" in result.output
    assert "nothing was written" in result.output and not (tmp_path / "x.db").exists()


def test_start_warns_once_per_language_whose_readers_fall_back(make_cohort: CohortFactory) -> None:
    cohort = load_cohort(make_cohort(ROSTER + "gil@example.com,Gil Lobo,Europe/Lisbon,pt,vendas\n"), [EMAILS])
    warnings = [w for w in cohort.warnings if "Portuguese" in w]
    assert len(warnings) == 1, cohort.warnings
    assert "2 participant(s) (rows 7, 8) reading Portuguese (pt, pt-BR)" in warnings[0]
    assert "Add welcome.pt.html" in warnings[0]
    assert not [w for w in cohort.warnings if "Japanese" in w or "German" in w or "French" in w]


def _own_program(tmp_path: Path) -> tuple[Path, Path]:
    """Give the cohort made by make_cohort a copy of the shipped program to change: (emails/, the copy)."""
    program = tmp_path / "emails"
    program.unlink()
    program.mkdir()
    copy = program / "crawl-walk-run"
    copy.mkdir()
    for path in PROGRAM.iterdir():
        copy.joinpath(path.name).write_bytes(path.read_bytes())
    return program, copy


def test_start_warns_about_fixed_strings_left_untranslated(
    make_cohort: CohortFactory, tmp_path: Path
) -> None:
    folder = make_cohort(ROSTER)
    program, copy = _own_program(tmp_path)
    strings = copy / "strings.de.toml"
    strings.write_text(strings.read_text().replace('"Mark it done" =', '"Mark it dun" ='))
    warnings = [w for w in load_cohort(folder, [program]).warnings if "strings.de.toml" in w]
    assert len(warnings) == 1 and "1 fixed string(s)" in warnings[0] and "'Mark it done'" in warnings[0]


# --- end to end ----------------------------------------------------------------------------------


def _run(runner: CliRunner, db: str, *args: str, env: dict | None = None) -> str:
    result = runner.invoke(main, ["--database-url", db, *args], env=env or {})
    assert result.exit_code == 0, result.output
    return result.output


def _text(message) -> str:
    return message.get_body(("plain",)).get_content()


EXPECTED = {
    # reader: (Content-Language, short_date of 1 February, "Mark it done" as the button says it)
    "ana@example.com": ("es-MX", "1 de febrero", "Marcar como hecho"),
    "ben@example.com": ("ja", "2月1日", "完了を報告する"),
    "cleo@example.com": ("en-GB", "1 February", "Mark it done"),
    "dora@example.com": ("de", "1. Februar", "Als erledigt markieren"),
    "emil@example.com": ("fr-CA", "1 février", None),
    "flor@example.com": ("en-GB", "1 February", "Mark it done"),  # no Portuguese: English, whole
}


def test_each_reader_gets_every_email_in_their_language_through_a_real_server(
    make_cohort: CohortFactory, database_url: str, smtp_server: SMTPServer, runner: CliRunner
) -> None:
    folder = make_cohort(ROSTER, COHORT_TOML.replace("America/New_York", "Europe/London"))
    _run(runner, database_url, "start", str(folder), "--now", "2027-01-04T12:00Z",
         env={"DRIP_EMAILS_DIR": str(folder.parent.parent / "emails")})  # fmt: skip
    _run(runner, database_url, "run", "--once", "--now", "2027-01-09T00:00Z", "--until", "2027-01-13T00:00Z",
         "--no-web", env={"DRIP_SMTP_URL": smtp_server.url})  # fmt: skip
    french = load_strings(PROGRAM, "fr").get("Mark it done")
    by_reader: dict[str, list] = {}
    for received in smtp_server.messages:
        message = message_from_bytes(received.data, policy=policy.default)
        by_reader.setdefault(received.recipients[0], []).append(message)
    assert set(by_reader) == set(EXPECTED)
    for reader, (language, february, button) in EXPECTED.items():
        kickoff = next(m for m in by_reader[reader] if m["X-Drip-Step"] == "short-kickoff")
        html = kickoff.get_body(("html",)).get_content()
        assert kickoff["Content-Language"] == language
        assert f'<html lang="{language}"' in html
        assert february in str(kickoff["Subject"]), (reader, kickoff["Subject"])
        assert unescape(button or french) in unescape(html)
        assert (button or french) in _text(kickoff)
        entry = next(
            part for part in kickoff.iter_attachments() if part.get_content_type() == "text/calendar"
        )
        event = icalendar.Calendar.from_ical(entry.get_content()).walk("VEVENT")[0]
        title = load_strings(PROGRAM, language).get("Crawl: your LinkedIn profile and 10 connections")
        due = (
            "Due: {title}"
            if language.startswith("en")
            else load_strings(Path(__import__("drip.core").core.__file__).parent, language).get(
                "Due: {title}"
            )
        )
        assert str(event["SUMMARY"]) == due.format(title=title)
        mailto = re.search(r'href="(mailto:[^"]+)"', html)[1]
        assert "Done" not in unescape(mailto) or language.startswith("en")
    japanese = next(m for m in by_reader["ben@example.com"] if m["X-Drip-Step"] == "welcome")
    assert "伊藤 勉様" in _text(japanese) and "Hi " not in _text(japanese)
    assert "英語" not in str(japanese["Subject"])


@pytest.fixture
def pages(store: Store, make_cohort: CohortFactory, database_url: str):
    with store.transaction() as conn:
        enrol.sync_cohort(
            conn, load_cohort(make_cohort(ROSTER), [EMAILS]), dt.datetime(2027, 1, 4, tzinfo=dt.UTC)
        )
        from drip.config import load_settings
        from drip.storage import keyring

        keyring.prepare(load_settings(environ={}), conn)
    app = create_app(settings(database_url), clock=lambda: dt.datetime(2027, 1, 13, 15, tzinfo=dt.UTC))
    yield store, app.test_client()
    app.extensions["drip"].database.close()


def _goal_id(store: Store, email: str) -> int:
    from sqlalchemy import select

    from drip.storage.store import goal_table, participant_table

    with store.reading() as conn:
        return conn.execute(
            select(goal_table.c.id)
            .join(participant_table, participant_table.c.id == goal_table.c.participant_id)
            .where(participant_table.c.email == email, goal_table.c.goal == "short")
        ).scalar_one()


@pytest.mark.parametrize(
    ("email", "lang", "ask", "button", "thanks"),
    [
        ("dora@example.com", "de", "Dora, ist dieses Ziel erledigt?", "Ja, als erledigt markieren", "Vielen Dank, Dora"),
        ("ben@example.com", "ja", "こちらの目標は完了しましたか", "はい、完了を報告します", "ありがとうございました"),
        ("ana@example.com", "es-MX", "Ana, ¿ya cumplió este objetivo?", "Sí, marcar como hecho", "Gracias, Ana"),
        ("emil@example.com", "fr-CA", "Émile, cet objectif est-il atteint ?", "Oui, c’est fait", "Merci, Émile"),
        ("flor@example.com", "en", "Flor, is this one done?", "Yes, mark it done", "Thank you, Flor"),
    ],
)  # fmt: skip
def test_the_link_pages_speak_the_readers_language(
    pages: tuple[Store, FlaskClient], email: str, lang: str, ask: str, button: str, thanks: str
) -> None:
    store, client = pages
    url = f"/done/{token(store, Action.DONE, _goal_id(store, email))}"
    page = client.get(url).get_data(as_text=True)
    assert f'<html lang="{lang}">' in page
    assert ask in unescape(page) and button in unescape(page)
    done = unescape(client.post(url).get_data(as_text=True))
    assert thanks in done
    assert "Crawl:" in done  # the goal's title, in the reader's language where it has one


def test_a_broken_link_answers_in_the_browsers_language(pages: tuple[Store, FlaskClient]) -> None:
    _, client = pages
    page = client.get("/done/nonsense", headers={"Accept-Language": "ja,en;q=0.5"})
    assert page.status_code == 400 and "このリンクはご利用いただけません" in page.get_data(as_text=True)
    english = client.get("/done/nonsense", headers={"Accept-Language": "pt-BR"})
    assert "This link does not work" in english.get_data(as_text=True)


def test_the_report_shows_participants_by_language(
    make_cohort: CohortFactory, database_url: str, runner: CliRunner, tmp_path: Path
) -> None:
    folder = make_cohort(ROSTER)
    _run(runner, database_url, "start", str(folder), "--now", "2027-01-04T12:00Z",
         env={"DRIP_EMAILS_DIR": str(folder.parent.parent / "emails")})  # fmt: skip
    _run(runner, database_url, "participant", "done", "test-cohort", "ben@example.com", "--goal", "short",
         "--now", "2027-01-20T12:00Z")  # fmt: skip
    out = tmp_path / "report.html"
    _run(runner, database_url, "report", "test-cohort", "--now", "2027-01-21T00:00Z", "--out", str(out))
    text = " ".join(unescape(re.sub(r"<[^>]+>", " ", out.read_text())).split())
    assert "Participants by language" in text
    assert f"{display_name('ja')} ja 1 1 (100%)" in text
    assert f"{display_name('en-GB')} en-GB 1 0 (0%)" in text


def test_shipped_strings_files_are_valid_toml() -> None:
    for path in [
        *PROGRAM.glob("strings.*.toml"),
        *Path(__import__("drip.core").core.__file__).parent.glob("strings.*.toml"),
    ]:
        assert tomllib.loads(path.read_text(encoding="utf-8")), path


def test_start_renders_each_language_in_full_and_names_a_broken_variant(
    make_cohort: CohortFactory, tmp_path: Path, runner: CliRunner
) -> None:
    folder = make_cohort(ROSTER)
    program, copy = _own_program(tmp_path)
    broken = copy / "short-due.ja.html"
    broken.write_text(broken.read_text().replace("{{ participant.name }}様", "{{ participant.nme }}様", 1))
    result = runner.invoke(
        main, ["--database-url", f"sqlite:///{tmp_path / 'x.db'}", "start", str(folder)],
        env={"DRIP_EMAILS_DIR": str(program)},
    )  # fmt: skip
    assert result.exit_code != 0
    assert "step 'short-due' fails for ben@example.com" in result.output
    assert "short-due.ja.html, line" in result.output and "nme" in result.output
    assert "cleo@example.com" not in result.output, "the English emails are fine"


#: how an executive answers each shipped language's emails: (reply, what drip must make of it)
REPLIES = {
    "de": [("Erledigt, vielen Dank!", "done"), ("Habe ich erledigt.", "done"),
           ("Noch nicht erledigt.", "not done"), ("Ich bin fast fertig.", "in doubt")],
    "fr": [("C'est fait, merci !", "done"), ("Terminé.", "done"), ("Pas encore terminé.", "not done"),
           ("Presque fini.", "in doubt")],
    "es": [("¡Hecho! Gracias.", "done"), ("Listo, gracias.", "done"), ("Todavía no está hecho.", "not done"),
           ("Casi terminado.", "in doubt")],
    "ja": [("完了しました。よろしくお願いいたします。", "done"), ("対応済みです。", "done"),
           ("まだ完了していません。", "not done"), ("ほぼ完了です。", "in doubt")],
}  # fmt: skip


@pytest.mark.parametrize(
    ("reply", "verdict"),
    [pair for replies in REPLIES.values() for pair in replies],
    ids=lambda v: str(v)[:24],
)
def test_the_reply_reader_reads_each_shipped_language(reply: str, verdict: str) -> None:
    assert read(reply).verdict == verdict
