"""What a reply's own words say: done, not done, in doubt, or something else, in every language drip reads."""

import tomllib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drip.core import wording
from drip.core.wording import RULES_FILE, Rules, Verdict

DONE, NOT_DONE, DOUBT, OTHER, EMPTY = (
    Verdict.DONE, Verdict.NOT_DONE, Verdict.DOUBT, Verdict.OTHER, Verdict.EMPTY,
)  # fmt: skip


@pytest.mark.parametrize(
    ("text", "verdict"),
    [
        # English
        ("Done!", DONE), ("done.", DONE), ("I've finished it, thanks", DONE), ("All done 👍", DONE),
        ("Completed ✅", DONE), ("✅", DONE), ("✔️ all set", DONE), ("No worries, done!", DONE),
        ("Done! Let me know if you need anything else.", DONE), ("Yes, done, thanks. Twelve so far.", DONE),
        ("Not done yet", NOT_DONE), ("I haven't finished", NOT_DONE), ("I have not\nfinished", NOT_DONE),
        ("I won't be done until Friday", NOT_DONE), ("Not yet, next week.", NOT_DONE),
        ("Almost finished", DOUBT), ("Mostly done", DOUBT), ("Is it done when I have 9 connections", DOUBT),
        ("Done?", DOUBT), ("Thanks, will do it tomorrow", DOUBT), ("I'll have it done by Friday", DOUBT),
        ("Done once I'm back from Singapore", DOUBT), ("Done if 8 connections count", DOUBT),
        ("This is a complete waste of my time, stop emailing me.", DOUBT),
        ("I'm done with these emails", DOUBT), ("Done. Actually, scratch that: still at six.", DOUBT),
        ("Done, but the link did not work", DOUBT), ("Well done, team", OTHER), ("Thanks", OTHER),
        ("", EMPTY), ("  \n ", EMPTY), ("https://www.linkedin.com/in/ana", EMPTY),  # links are not words
        ("Done: https://www.linkedin.com/in/ana?trk=public", DONE),
        # German
        ("Erledigt, danke", DONE), ("Ist erledigt!", DONE), ("Noch nicht erledigt", NOT_DONE),
        ("Ich werde es morgen erledigen", DOUBT), ("Ist erledigt, sobald ich Zeit habe", DOUBT),
        ("Erledigt. Ich lese jetzt jeden Morgen fünf Stimmen.", DONE), ("Fast fertig", DOUBT),
        # French
        ("C'est fait ! Mon profil est en ligne.", DONE), ("Fait, merci !", DONE), ("Pas encore fini", NOT_DONE),
        ("J'ai fait une liste", OTHER), ("Ce sera fait demain", DOUBT), ("Presque terminé", DOUBT),
        ("En fait, non.", DOUBT),
        # Spanish
        ("¡Listo!", DONE), ("Hecho, ya tengo el lector funcionando.", DONE), ("Todavía no está hecho", NOT_DONE),
        ("Lo terminaré mañana", DOUBT), ("Hecho. Las leo cada mañana.", DONE), ("¿Está hecho?", DOUBT),
        # Italian, Dutch, Portuguese
        ("Fatto, grazie", DONE), ("Non ancora fatto", NOT_DONE), ("Lo finirò domani", DOUBT),
        ("Klaar!", DONE), ("Is gedaan: nieuwe foto.", DONE), ("Nog niet klaar", NOT_DONE),
        ("Feito! Obrigado.", DONE), ("Ainda não terminei", NOT_DONE), ("Vou terminar amanhã", DOUBT),
        # Japanese
        ("完了しました。よろしくお願いいたします。", DONE), ("終わりました！", DONE), ("済みました。", DONE),
        ("できました！", DONE), ("まだ完了していません。", NOT_DONE), ("未完了です", NOT_DONE),
        ("明日完了する予定です。", DOUBT), ("完了しましたか？", DOUBT), ("完了したら連絡します。", DOUBT),
        ("ほぼ完了しました", DOUBT),
        # Chinese
        ("已完成，谢谢！", DONE), ("搞定了", DONE), ("做好了。", DONE), ("还没完成", NOT_DONE),
        ("我没有完成", NOT_DONE), ("我明天会完成", DOUBT), ("完成了吗？", DOUBT), ("差不多完成了", NOT_DONE),
        ("如果有时间就完成", DOUBT),
    ],
)  # fmt: skip
def test_what_a_reply_says(text: str, verdict: Verdict) -> None:
    assert wording.read(text).verdict is verdict


def test_the_rule_that_decided_is_named() -> None:
    assert wording.read("Erledigt, danke").rule == "done: 'erledigt' (German)"
    assert wording.read("Thanks, will do").rule == "future: 'will' (English)"
    assert wording.read("まだ完了していません").rule == "negation: 'ません' with '完了' (Japanese)"


def test_done_words_can_be_replaced_and_the_blockers_stay() -> None:
    assert wording.read("Yes, sorted", done_words=["sorted"]).verdict is DONE
    assert wording.read("Done", done_words=["sorted"]).verdict is OTHER
    assert wording.read("Not sorted yet", done_words=["sorted"]).verdict is NOT_DONE
    assert wording.read("Will be sorted tomorrow", done_words=["sorted"]).verdict is DOUBT


def test_every_language_drip_reads_has_every_kind_of_rule() -> None:
    table = tomllib.loads(RULES_FILE.read_text(encoding="utf-8"))
    spoken = [key for key in table if key != "any"]
    assert set(spoken) == {"en", "de", "fr", "es", "it", "nl", "pt", "ja", "zh"}
    for key in spoken:
        for category in (
            "done",
            "negation",
            "not_yet",
            "hedge",
            "future",
            "conditional",
            "question",
            "complaint",
        ):
            assert table[key].get(category), f"{key} has no {category}"
    assert set(table[key]) <= {*wording.CATEGORIES, "name", "characters"}


def test_a_table_with_an_unknown_category_is_not_silently_half_read() -> None:
    rules = Rules({"xx": {"name": "X", "done": ["yay"], "conditional": ["iff"]}})
    assert rules.read("yay").verdict is DONE and rules.read("yay iff").verdict is DOUBT


_DONE_PHRASES = sorted(
    {
        phrase
        for entry in tomllib.loads(RULES_FILE.read_text(encoding="utf-8")).values()
        for phrase in entry.get("done", [])
    }
)
_BLOCKERS = [
    "not yet", "I will do it tomorrow", "if I find the time", "any news?", "almost", "noch nicht", "werde",
    "pas encore", "todavía no", "まだ", "明日", "还没", "会",
]  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.sampled_from(_DONE_PHRASES), min_size=1, max_size=3),
    st.sampled_from(_BLOCKERS),
    st.text(alphabet=st.characters(categories=["L", "N", "Zs"]), max_size=40),
    st.booleans(),
)
def test_a_blocker_anywhere_keeps_any_done_from_counting(
    phrases: list[str], blocker: str, noise: str, before: bool
) -> None:
    said = " ".join(phrases)
    text = f"{blocker}. {said}. {noise}" if before else f"{said}. {noise} {blocker}."
    assert wording.read(text).verdict is not DONE


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400))
def test_any_text_gets_a_verdict(text: str) -> None:
    found = wording.read(text)
    assert isinstance(found.verdict, Verdict) and found.rule


def test_the_readme_table_is_the_rules() -> None:
    from conftest import ROOT

    table = tomllib.loads(RULES_FILE.read_text(encoding="utf-8"))
    rows = [
        "| language | done | done in a clause of its own | negation (before it; in Japanese also after) | not yet |",
        "| --- | --- | --- | --- | --- |",
    ]
    for key, entry in table.items():
        if key == "any":
            continue
        negation = [*entry.get("negation", []), *(f"…{word}" for word in entry.get("negation_after", []))]
        cells = [entry["done"], entry.get("done_alone", []), negation, entry["not_yet"]]
        rows.append(f"| {entry['name']} | " + " | ".join(", ".join(cell) for cell in cells) + " |")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = readme.split("tests/test_wording.py checks it -->\n", 1)[1].split(
        "\n<!-- end of wording table", 1
    )[0]
    assert block == "\n".join(rows)
