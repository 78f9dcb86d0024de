"""Where a reply's own words end: every way mail clients quote, in any language, and drip's own links."""

import tomllib
from email.message import EmailMessage

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drip.core import reading
from drip.core.quotes import Cut, html_text, own_text, unflow
from drip.core.wording import RULES_FILE, Verdict
from drip.replies.handling import own_links

OURS = own_links("https://drip.example.com")
QUOTED = "Hi Ana,\nWhen it is done, tap Mark it done <https://drip.example.com/done/abc>.\n"


@pytest.mark.parametrize(
    ("reply", "own"),
    [
        # Gmail, in English and wrapped over two lines, and in other languages
        ("Not yet.\n\nOn Tue, Jan 12, 2027 at 9:00 AM Comms <comms@example.com> wrote:\n> done", "Not yet."),
        ("Not yet.\n\nOn Tue, Jan 12, 2027 at 9:00 AM Northwind Communications <\ncomms@example.com> wrote:\n> done",
         "Not yet."),
        ("Noch nicht.\n\nAm Di., 12. Jan. 2027 um 09:00 Uhr schrieb Comms <comms@example.com>:\n> done", "Noch nicht."),
        ("Pas encore.\n\nLe mar. 12 janv. 2027 à 09:00, Comms <comms@example.com> a écrit :\n> fait", "Pas encore."),
        ("まだです。\n\n2027年1月12日(火) 9:00 Comms <comms@example.com>:\n> 完了", "まだです。"),
        ("还没。\n\nComms <comms@example.com> 于2027年1月12日周二 09:00写道：\n> 完成", "还没。"),
        # an attribution in a language drip does not know, and neomutt's
        ("Nie jeszcze.\n\nwt., 12 sty 2027 o 09:00 Comms <comms@example.com> napisał(a):\n> done", "Nie jeszcze."),
        ("Not yet.\n\n* Comms <comms@example.com> [2027-01-12 09:00]:\n> done", "Not yet."),
        ("Inte än.\n\nDen 12 jan. 2027 skrev Comms:\n> done", "Inte än."),
        # Outlook's header block, in English, German, Japanese and Polish
        ("Not yet\n\n________________________________\nFrom: Comms <comms@example.com>\nSent: Tuesday\nTo: Ana\n"
         "Subject: Done?\n\ndone", "Not yet"),
        ("Noch nicht\n\nVon: Comms <comms@example.com>\nGesendet: Dienstag\nAn: Dora\nBetreff: x\n\nerledigt",
         "Noch nicht"),
        ("まだです\n\n差出人: Comms <comms@example.com>\n送信日時: 2027年1月12日 9:00\n宛先: 花\n件名: x\n\n完了",
         "まだです"),
        ("Nie jeszcze\n\nOd: Comms <comms@example.com>\nWysłane: wtorek\nDo: Piotr\nTemat: Mark it done\n\ndone",
         "Nie jeszcze"),
        # separators and signatures
        ("Not yet\n-----Ursprüngliche Nachricht-----\ndone", "Not yet"),
        ("Not yet\n\n-- \nAna Ruiz\nDone Deals Inc.", "Not yet"),
        ("Not yet\n\nSent from my iPhone\n\ndone", "Not yet"),
        ("Noch nicht\n\nVon meinem iPhone gesendet", "Noch nicht"),
        ("まだです\n\niPhoneから送信", "まだです"),
        ("Not yet\n\nGet Outlook for iOS<https://aka.ms/o0ukef>\n", "Not yet"),
        # bottom-posted and inline answers keep what follows each quote
        ("On Tue, Jan 12, 2027 at 9:00 AM Comms <comms@example.com> wrote:\n> Is it done?\n\nNot yet.", "Not yet."),
        ("> Profile?\nNot yet.\n> Connections?\nSix.", "Not yet.\nSix."),
        # a disclaimer paragraph goes, the words before it stay
        ("Done.\n\nCONFIDENTIAL: if you are not the intended recipient, delete this email.", "Done."),
    ],
)  # fmt: skip
def test_the_quote_is_cut_as_each_client_writes_it(reply: str, own: str) -> None:
    assert own_text(reply, OURS).text == own


def test_a_persons_own_label_lines_are_not_a_quote_header() -> None:
    reply = "C'est fait : cinq voix suivies.\n\nCordialement,\nÉloïse\n\nDe : Comms <comms@example.com>\n"
    reply += "Envoyé : lundi\nÀ : Éloïse\nObjet : x\n\nHi"
    assert own_text(reply, OURS).text == "C'est fait : cinq voix suivies.\n\nCordialement,\nÉloïse"


def test_drips_own_links_mark_the_quote_when_nothing_else_does() -> None:
    found = own_text("Nie jeszcze, za tydzień.\n\nOd kogo: Comms\n\n" + QUOTED, OURS)
    assert found.cut is Cut.UNSURE and "Mark it done" not in found.text
    assert (
        own_text("Done.\n\n" + QUOTED.replace("drip.example.com", "elsewhere.example"), OURS).cut is Cut.CLEAN
    )
    safe_links = (
        "https://eur01.safelinks.protection.outlook.com/?url=https%3A%2F%2Fdrip.example.com%2Fdone%2Fabc"
    )
    assert own_text(f"Done.\n\nMark it done <{safe_links}>", OURS).cut is Cut.UNSURE


def test_an_unsure_cut_never_reads_as_done() -> None:
    message = EmailMessage()
    message["From"] = "ana@example.com"
    message.set_content("Done.\n\nHi Ana,\n" + QUOTED)
    incoming = reading.read(message.as_bytes(), OURS)
    assert incoming.cut is Cut.UNSURE and incoming.reading().verdict is Verdict.DOUBT


def test_format_flowed_is_joined_before_reading() -> None:
    flowed = "I have not \r\nfinished yet.\r\n> quoted \r\n> line\r\n-- \r\nsig"
    assert unflow(flowed, delsp=False) == "I have not finished yet.\n> quoted line\n-- \nsig"
    assert unflow("終わり\r\nました", delsp=True) == "終わり\nました"
    assert unflow("終わり \r\nました", delsp=True) == "終わりました"


def test_html_replies_lose_their_quote_containers_and_keep_their_links() -> None:
    html = (
        '<div dir="ltr">Not yet <a href="https://www.linkedin.com/in/ana">profile</a></div>'
        '<div class="gmail_quote">On ... wrote:<blockquote>Done</blockquote></div>'
    )
    assert html_text(html).strip() == "Not yet profile <https://www.linkedin.com/in/ana>"
    outlook = (
        '<p class="MsoNormal">Noch nicht</p><div style="border:none;border-top:solid #E1E1E1 1.0pt;'
        'padding:3.0pt 0cm 0cm 0cm"><p><b>Von:</b> Comms</p></div><p>erledigt</p>'
    )
    assert html_text(outlook).split() == ["Noch", "nicht"]
    assert "Done" not in html_text("<p>Thanks</p><blockquote type=cite>Done</blockquote>")


# --- property: quoting any "done" never completes ----------------------------------------

_DONE = sorted(
    {
        p
        for entry in tomllib.loads(RULES_FILE.read_text(encoding="utf-8")).values()
        for p in entry.get("done", [])
    }
)
_OWN = ["Not yet, sorry.", "Thanks, I will look at it next week.", "Noch nicht.", "Pas encore.", "まだです。",
        "还没有。", "Can we talk about it on Friday?", "Thanks!", ""]  # fmt: skip
_LABELS = [
    ("From", "Sent", "To", "Subject"), ("Von", "Gesendet", "An", "Betreff"), ("De", "Envoyé", "À", "Objet"),
    ("差出人", "送信日時", "宛先", "件名"), ("发件人", "发送时间", "收件人", "主题"), ("Od", "Wysłane", "Do", "Temat"),
    ("Från", "Skickat", "Till", "Ämne"), ("Kimden", "Gönderildi", "Kime", "Konu"),
]  # fmt: skip


def _quote(style: int, labels: tuple[str, ...], done: str) -> str:
    body = f"Hi Ana,\n{done}\nMark it done <https://drip.example.com/done/abc>\n"
    if style == 0:  # ">" lines after an attribution in any language
        return "Dnia 12.01.2027 Comms <comms@example.com> napisał:\n" + "".join(
            f"> {line}\n" for line in body.split("\n")
        )
    if style == 1:  # a header block with no ">" at all
        head = [f"{labels[0]}: Comms <comms@example.com>", f"{labels[1]}: 12.01.2027 09:00", f"{labels[2]}: Ana",
                f"{labels[3]}: {done}"]  # fmt: skip
        return "\n".join(head) + "\n\n" + body
    if style == 2:
        return "________________________________\n" + body
    return body  # no marker at all: only drip's own link says where the quote is


@settings(max_examples=400, deadline=None)
@given(
    st.sampled_from(_OWN),
    st.lists(st.sampled_from(_DONE), min_size=1, max_size=3),
    st.integers(0, 3),
    st.sampled_from(_LABELS),
    st.booleans(),
)
def test_done_in_the_quoted_email_never_counts(
    own: str, done: list[str], style: int, labels: tuple[str, ...], html: bool
) -> None:
    message = EmailMessage()
    message["From"] = "ana@example.com"
    message["Subject"] = "Re: " + " ".join(done)
    text = f"{own}\n\n{_quote(style, labels, ' '.join(done))}"
    if html:
        paragraphs = "".join(f"<p>{line}</p>" for line in own.split("\n"))
        quoted = _quote(style, labels, " ".join(done)).replace("\n", "<br>")
        message.set_content(f"<html><body>{paragraphs}<div id=\"appendonsend\"></div><div>{quoted}</div></body></html>",
                            subtype="html")  # fmt: skip
    else:
        message.set_content(text)
    incoming = reading.read(message.as_bytes(), OURS)
    assert incoming.reading().verdict is not Verdict.DONE, incoming.new_text
