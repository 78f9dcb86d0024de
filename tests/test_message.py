"""Whole messages of the Crawl > Walk > Run program, read back as a mail client would."""

import datetime as dt
import os
import re
from pathlib import Path

import icalendar
import pytest

from conftest import COHORT_TOML, EMAILS, ROOT, CohortFactory
from drip.core.message import build, cohort_view, links_for, recipient_of
from drip.core.plan import expand_steps, program_end
from drip.core.render import Templates
from drip.core.tokens import Action, message_tag, read_thread_index, read_token
from drip.launch.cohort import load_cohort

KEYS = ("s" * 32,)
WHEN = dt.datetime(2027, 1, 29, 14, 0, tzinfo=dt.UTC)
GOLDEN = ROOT / "tests" / "data" / "golden"


def emails(folder: Path, email: str | None = None):
    """Build every email of one participant of the cohort in ``folder``: each step, each occurrence."""
    cohort = load_cohort(folder, [EMAILS])
    person = next(p for p in cohort.participants if email is None or p.email == email)
    timing = cohort.timing(person)
    goal_ids = {"short": 11, "mid": 12, "long": 13}
    recipient = recipient_of(person, cohort.program, timing, goal_ids)
    links = links_for(
        "https://drip.example.com", KEYS, "comms@northwind.example", program_end(cohort.program, timing)
    )
    templates = Templates(cohort.program.path, cohort.program.language)
    view = cohort_view(cohort)
    for step in expand_steps(cohort.program, timing):
        yield (
            step,
            build(
                templates, view, recipient, step, when=WHEN, delivery_id="42", instance="ab12", links=links
            ),
        )


EXAMPLE = ROOT / "cohorts" / "example"


def test_headers_parts_and_inlined_styles() -> None:
    built = dict(emails(EXAMPLE, "james.whitaker@northwind.example"))
    reminder = next(b for s, b in built.items() if s.key == "short-reminder").message
    parsed = next(b for s, b in built.items() if s.key == "short-reminder").as_bytes()
    from email import message_from_bytes, policy

    mail = message_from_bytes(parsed, policy=policy.default)
    assert mail["From"].addresses[0].display_name == "Northwind Communications"
    assert mail["To"].addresses[0].addr_spec == "james.whitaker@northwind.example"
    assert mail["Cc"].addresses[0].addr_spec == "priya.nair@northwind.example"  # the delegate
    assert mail["Reply-To"].addresses[0].addr_spec == "comms@northwind.example"
    # The Message-ID and Thread-Index carry an HMAC of the delivery: a reply can name only an email it got.
    assert mail["Message-ID"] == f"<drip.42.{message_tag(KEYS, 'ab12', '42')}@northwind.example>"
    assert "ab12" not in mail["Message-ID"] and read_thread_index(KEYS, mail["Thread-Index"]) == 42
    assert str(mail["Subject"]) == reminder.subject == "3 days left: your LinkedIn profile"
    assert (mail["X-Drip-Cohort"], mail["X-Drip-Step"], mail["X-Drip-Goal"]) == (
        "example",
        "short-reminder",
        "short",
    )
    unsubscribe = str(mail["List-Unsubscribe"])
    assert (
        unsubscribe.startswith("<https://drip.example.com/unsubscribe/") and ", <mailto:comms+" in unsubscribe
    )
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert mail["List-Id"] == '"Northwind leadership, winter 2027" <example.northwind.example>'
    assert mail["Feedback-ID"] == "example:short-reminder:northwind.example"
    assert mail["X-Auto-Response-Suppress"] == "OOF, AutoReply"
    organizer = icalendar.Calendar.from_ical(mail.get_payload()[-1].get_content()).walk("VEVENT")[0][
        "ORGANIZER"
    ]
    assert str(organizer) == "mailto:comms@northwind.example"
    assert organizer.params["CN"] == "Northwind Communications"
    assert [p.get_content_type() for p in mail.walk()] == [
        "multipart/mixed", "multipart/alternative", "text/plain", "text/html", "text/calendar",
    ]  # fmt: skip
    html = mail.get_body(("html",)).get_content()
    assert '<p style="margin:0 0 16px 0' in html  # CSS inlined on the elements
    # Outlook for Windows draws the button in VML; every other client gets the HTML one
    done = re.search(r'href="(https://drip.example.com/done/[^"]+)"', html)
    assert done and re.search(r'<!--\[if mso\]>\s+<v:roundrect xmlns:v="urn:schemas-microsoft-com:vml"', html)
    assert html.count(done.group(1)) == 2 and "<v:roundrect" in html.split("<!--[if !mso]><!-->")[0]
    assert "@media screen and (max-width: 620px)" in html and "prefers-color-scheme: dark" in html
    assert 'class="preheader"' in html and "A photo, a headline, ten colleagues." in html
    text = mail.get_body(("plain",)).get_content()
    assert "Hi James," in text and "Mark it done (https://drip.example.com/done/" in text
    assert all(len(line) <= 998 for line in parsed.split(b"\r\n"))


@pytest.mark.parametrize(
    ("name", "list_id"),
    [
        ("Exec social 2027", "Exec social 2027 <test-cohort.example.com>"),
        ("Crawl: spring, EMEA", '"Crawl: spring, EMEA" <test-cohort.example.com>'),
        ("Führungskräfte 2027", "<test-cohort.example.com>"),  # never an encoded-word in a header drip writes
    ],
)
def test_list_id_names_the_cohort(make_cohort: CohortFactory, name: str, list_id: str) -> None:
    folder = make_cohort(toml=COHORT_TOML.replace('name = "Test cohort"', f'name = "{name}"'))
    welcome = next(b for s, b in emails(folder) if s.key == "welcome").message
    assert dict(welcome.headers)["List-Id"] == list_id


def test_a_long_list_unsubscribe_folds_at_its_comma_without_encoded_words(make_cohort: CohortFactory) -> None:
    cohort = load_cohort(make_cohort(), [EMAILS])
    person = cohort.participants[0]
    timing = cohort.timing(person)
    links = links_for(
        "https://links.training.northwind-traders-international.example/drip", KEYS,
        "comms@example.com", program_end(cohort.program, timing),
    )  # fmt: skip
    step = cohort.program.step("welcome")
    assert step is not None
    built = build(
        Templates(cohort.program.path, cohort.program.language), cohort_view(cohort), recipient_of(person, cohort.program, timing, {}),
        step, when=WHEN, delivery_id="42", instance="ab12", links=links,
    )  # fmt: skip
    head = built.as_bytes().split(b"\r\n\r\n")[0].decode()
    line = head[head.index("List-Unsubscribe:") :].split("\r\nList-Unsubscribe-Post")[0]
    assert "=?" not in line and line.count("\r\n ") >= 1
    assert all(len(part) <= 998 for part in line.split("\r\n"))
    assert line.split("\r\n ")[0].endswith(">,")


def test_welcome_has_no_goal_header_and_no_calendar() -> None:
    welcome = next(b for s, b in emails(EXAMPLE) if s.key == "welcome").message
    assert "X-Drip-Goal" not in dict(welcome.headers)
    assert welcome.attachments == ()
    assert "For you that goal is sales" in welcome.text  # Margaret's objective column
    assert "Crawl: your LinkedIn profile and 10 connections, by Monday 1 February." in welcome.text


def test_links_are_signed_and_bound_to_the_goal() -> None:
    due = next(b for s, b in emails(EXAMPLE) if s.key == "short-due").message
    token = due.text.split("https://drip.example.com/done/")[1][:34]
    claim = read_token(KEYS, token, Action.DONE, dt.date(2027, 2, 1))
    # 30 days after the program's end, six months after the long deadline (5 April)
    assert claim.object_id == 11 and claim.expires == dt.date(2027, 10, 4) + dt.timedelta(days=30)
    mailto = due.html.split('href="mailto:')[1].split('"')[0]
    local = mailto.split("@")[0]
    assert local.startswith("comms+") and len(local) <= 64
    assert read_token(KEYS, local.removeprefix("comms+"), Action.DONE, dt.date(2027, 2, 1)).object_id == 11
    assert "subject=Done%3A%20Crawl%3A%20your%20LinkedIn%20profile" in mailto
    unsubscribe = dict(due.headers)["List-Unsubscribe"].split("/unsubscribe/")[1][:34]
    assert read_token(KEYS, unsubscribe, Action.UNSUBSCRIBE, dt.date(2099, 1, 1)).expires is None


@pytest.mark.parametrize(("via", "reopen"), [("reply", True), ("link", False), ("admin", False)])
def test_congratulations_on_a_done_from_a_reply_offer_to_reopen_it(via: str, reopen: bool) -> None:
    cohort = load_cohort(EXAMPLE, [EMAILS])
    person = cohort.participants[0]
    timing = cohort.timing(person)
    goal_ids = {"short": 11, "mid": 12, "long": 13}
    recipient = recipient_of(person, cohort.program, timing, goal_ids, {"short": "done"}, vias={"short": via})
    links = links_for(
        "https://drip.example.com", KEYS, "comms@northwind.example", program_end(cohort.program, timing)
    )
    step = cohort.program.step("short-done")
    assert step is not None
    built = build(
        Templates(cohort.program.path, cohort.program.language), cohort_view(cohort), recipient, step, when=WHEN, delivery_id="42",
        instance="ab12", links=links,
    )  # fmt: skip
    text = built.message.text
    assert ("Not right? Reopen it (https://drip.example.com/reopen/" in text) is reopen
    if reopen:
        token = text.split("https://drip.example.com/reopen/")[1][:34]
        assert read_token(KEYS, token, Action.REOPEN, dt.date(2027, 2, 1)).object_id == 11


def test_calendar_entry_replaces_itself_when_the_deadline_moves(make_cohort: CohortFactory) -> None:
    def entry(deadline: str):
        folder = make_cohort(f"email,name,short_deadline\nana@example.com,Ana,{deadline}\n")
        due = next(b for s, b in emails(folder) if s.key == "short-reminder").message
        (attachment,) = due.attachments
        return icalendar.Calendar.from_ical(attachment.data).walk("VEVENT")[0]

    first, moved = entry("2027-02-01"), entry("2027-02-08")
    assert first["UID"] == moved["UID"]
    assert first.decoded("DTSTART") == dt.date(2027, 2, 1) and moved.decoded("DTSTART") == dt.date(2027, 2, 8)
    assert str(first["SUMMARY"]) == "Due: Crawl: your LinkedIn profile and 10 connections"


def test_every_step_renders_for_a_non_ascii_name_and_for_empty_optional_columns(
    make_cohort: CohortFactory,
) -> None:
    folder = make_cohort(
        "email,name,timezone,objective,title\nzoe@example.com,Zoë Ñúñez-Øberg 田中,Asia/Tokyo,,\n"
    )
    built = list(emails(folder))
    assert len(built) == 27  # 21 steps (3 to the owners) and 6 monthly check-ins
    for step, message in built:
        data = message.as_bytes()
        assert data.isascii()
        assert "Zoë" in message.message.text or step.key == "closing" or "Zoë" in message.rendered.subject
    welcome = dict((s.key, b) for s, b in built)["welcome"].message
    assert "For you that goal is" not in welcome.text  # no objective: the general sentence instead
    bare = make_cohort("email,name\nbo@example.com,Bo\n", name="bare")
    assert len(list(emails(bare))) == 27


def _golden_steps() -> list[str]:
    """Every step's key, and of a repeating step its first and last occurrences (the text varies)."""
    cohort = load_cohort(EXAMPLE, [EMAILS])
    person = next(p for p in cohort.participants if p.email == "eleanor.hughes@northwind.example")
    steps = expand_steps(cohort.program, cohort.timing(person))
    return [step.key for step in steps if step.occurrence in (None, 1, step.occurrences)]


STEPS = _golden_steps()


@pytest.mark.parametrize("step_key", STEPS)
def test_golden(step_key: str) -> None:
    """Each email as a mail client reads it back: subject, text part, calendar entry.

    DRIP_TEST_UPDATE_GOLDEN=1 rewrites the files after a deliberate change; review the diff.
    """
    from email import message_from_bytes, policy

    built = next(b for s, b in emails(EXAMPLE, "eleanor.hughes@northwind.example") if s.key == step_key)
    mail = message_from_bytes(built.as_bytes(), policy=policy.default)
    assert not mail.defects
    text = mail.get_body(("plain",)).get_content().replace("\r\n", "\n")
    actual = f"Subject: {mail['Subject']}\n\n{text}"
    for attachment in mail.iter_attachments():
        actual += f"\n--- {attachment.get_filename()} ---\n" + attachment.get_content().replace("\r\n", "\n")
    golden = GOLDEN / f"{step_key}.txt"
    if os.environ.get("DRIP_TEST_UPDATE_GOLDEN"):
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(actual)
    assert actual == golden.read_text()


def test_reply_to_and_reply_done_go_to_drips_mailbox(make_cohort: CohortFactory) -> None:
    from drip.core.message import Links

    folder = make_cohort("email,name\nana@example.com,Dr. Ana Ruiz\n")
    cohort = load_cohort(folder, [EMAILS])
    person = cohort.participants[0]
    timing = cohort.timing(person)
    links = links_for(
        "https://drip.example.com", KEYS, "replies@drip.example.com", program_end(cohort.program, timing)
    )
    step = next(s for s in cohort.program.steps if s.key == "short-due")
    built = build(Templates(cohort.program.path, cohort.program.language), cohort_view(cohort), recipient_of(person, cohort.program, timing), step,
                  when=WHEN, delivery_id="1", instance="x", links=links)  # fmt: skip
    assert built.message.reply_to.address == "replies@drip.example.com"
    assert built.message.reply_to.name == "Comms"  # the cohort sender's name
    assert "Hi Ana," in built.message.text  # not "Hi Dr.,"
    long = Links(
        "https://d.example", KEYS, "northwind-leadership-communications-team@example.com", WHEN.date()
    )
    goal = recipient_of(person, cohort.program, timing).goals[0]
    mailto = long.reply_done_mailto(goal)
    assert mailto.startswith("mailto:northwind-leadership-communications-team@example.com?subject=Done")
    assert (
        "%5B" in mailto and len(mailto.split("@")[0].removeprefix("mailto:")) <= 64
    )  # token moved to the subject


def test_a_first_name_column_wins_and_a_bare_sender_still_reads(make_cohort: CohortFactory) -> None:
    toml = COHORT_TOML.replace('sender = "Comms <comms@example.com>"', 'sender = "comms@example.com"')
    folder = make_cohort("email,name,first_name\nana@example.com,Ana María Ruiz,Ani\n", toml=toml)
    welcome = next(b for s, b in emails(folder) if s.key == "welcome").message
    assert welcome.subject.startswith("Ani, ") and "run by comms@example.com." in welcome.text
