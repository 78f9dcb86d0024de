"""What a reply to a monthly check-in ("What did you share on social media this month?") answers: yes,
no, unclear or empty, in English, German, French, Spanish and Japanese.

A clear answer is recorded without a person reading it, so a wrong yes or no is worse than "unclear":
most of the table below is replies that must stay unclear.
"""

import tomllib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drip.core import wording
from drip.core.wording import RULES_FILE, Answered, Rules, Said

YES, NO, UNCLEAR, EMPTY = Said.YES, Said.NO, Said.UNCLEAR, Said.EMPTY

REPLIES = [
    # --- English: yes
    ("yes, I posted twice", YES), ("Yes!", YES), ("YES!!", YES), ("yep", YES), ("Yup 🙂", YES), ("Yess", YES),
    ("yeah, shared our case study on linkedin", YES), ("I shared an article with my team", YES),
    ("Posted one article and commented on three", YES), ("Yes, no problem", YES), ("I did!", YES),
    ("Thanks for checking in! Yes, I posted twice on LinkedIn.", YES),
    ("Reposted the company announcement and added a few lines of my own", YES),
    ("Published a short piece on our blog and shared it on LinkedIn", YES),
    ("Commented on a few posts from clients", YES), ("Just once, a photo from the trade fair", YES),
    ("Twice. One about hiring, one about the new office.", YES), ("✅", YES), ("✅ posted on monday", YES),
    ("Yes - wrote a post about our Q3 results", YES), ("I wrote about the conference, got 40 likes", YES),
    ("yes i did, 3 posts", YES), ("Sure did, shared the webinar link", YES), ("Of course, posted on Tuesday", YES),
    ("Tweeted about the launch", YES), ("yea shared 2 things", YES), ("Once.", YES), ("Definitely", YES),
    ("Uploaded a short video to LinkedIn", YES), ("yes, on X and on LinkedIn", YES), ("YES I POSTED", YES),
    ("Hi Sam, yes - I posted about our new product line on LinkedIn last Tuesday. Got a few nice comments. Best, Ana", YES),
    ("Hey! Shared 2 posts, one about the team offsite and one about hiring", YES),
    ("yse posted twice", YES), ("Yes i have posted 3 times this month", YES), ("Yes ✅", YES), ("✔️", YES),
    ("Posted once on linkedin, thats it", YES), ("i shared a repost of our ceo's post", YES),
    ("Yes. I'm still a bit shy about it but I did it", YES), ("Yes, though only on Instagram", YES),
    ("yes no problem, shared the link with my network", YES),
    # --- English: no
    ("not this month", NO), ("No", NO), ("NO", NO), ("Nope, too busy", NO), ("I haven't posted anything", NO),
    ("didn't get to it", NO), ("Nothing this month, sorry", NO), ("Not really.", NO), ("nope", NO),
    ("No, sorry", NO), ("Nah, crazy month", NO), ("None", NO), ("I did not share anything", NO),
    ("Unfortunately not", NO), ("No time this month", NO), ("Not yet", NO), ("Haven't had a chance", NO),
    ("Sorry, nothing to report", NO), ("never got round to it", NO), ("no posts this month", NO),
    ("Zero, I'm afraid", NO), ("I haven't shared a thing", NO), ("Not this time, was swamped", NO),
    ("Afraid not", NO), ("no :(", NO), ("Nooo 🙈", NO), ("❌", NO), ("❌ not this month", NO),
    ("Not a single post, sorry", NO), ("Didn't post, didn't share, been travelling.", NO),
    ("Nothing. Busy with the audit.", NO), ("I have not posted this month", NO),
    ("No worries, nothing from me this month", NO), ("No, I haven't", NO), ("I don't think so", NO),
    ("Not yet posted", NO), ("Yet to post", NO), ("No. I have been sick most of the month.", NO),
    ("Not this month - was at a conference all week and then catching up", NO),
    ("nothing this month, work has been crazy", NO), ("No, been off sick", NO),
    ("No posts, but I read a lot of them", NO), ("Honestly, no. I find it hard to know what to post.", NO),
    ("No I did not", NO), ("Of course not", NO), ("No problem. Nothing to share yet", NO),
    ("I read a lot but posted nothing", NO), ("Posted nothing", NO), ("Not me", NO),
    # phones drop apostrophes; a no right before a yes word takes it back
    ("nope, havent posted", NO), ("I didnt post anything", NO), ("Nothing shared this month", NO),
    ("nothing posted, nothing shared", NO),
    # --- English: unclear
    ("Yes and no", UNCLEAR), ("I will post next week", UNCLEAR), ("Did you get my last email?", UNCLEAR),
    ("Maybe once?", UNCLEAR), ("Thanks!", UNCLEAR), ("Maybe, I don't remember", UNCLEAR),
    ("I think I posted once", UNCLEAR), ("Does a comment count?", UNCLEAR), ("Not sure", UNCLEAR),
    ("Posted, but then deleted it", UNCLEAR), ("I wrote a draft but haven't published it", UNCLEAR),
    ("No, but I commented on a couple of posts", UNCLEAR), ("Not yet, will do this weekend", UNCLEAR),
    ("Please stop sending me these", UNCLEAR), ("I'm on vacation until the 20th", UNCLEAR),
    ("Nothing yet, I'll post once the campaign is live", UNCLEAR), ("Will keep you posted", UNCLEAR),
    ("ok", UNCLEAR), ("Kind of, I liked a few posts", UNCLEAR), ("Who is this?", UNCLEAR),
    ("Probably not", UNCLEAR), ("I tried but LinkedIn kept logging me out", UNCLEAR),
    ("Got it, thanks", UNCLEAR), ("Yes please send me the slides", UNCLEAR),
    ("I posted last month but nothing this month", UNCLEAR), ("Can we talk on Friday", UNCLEAR),
    ("Shared it with my boss, not on social media", UNCLEAR), ("idk", UNCLEAR),
    ("Yes, I posted. Actually no, that was in August", UNCLEAR), ("If comments count, yes", UNCLEAR),
    ("yes posted twice but no one liked them lol", UNCLEAR),
    ("Hi, no I haven't had time this month. Hopefully next month.", UNCLEAR),
    ("Sorry no, too many deadlines", UNCLEAR),  # "too many": a complaint, for a person to read
    ("Well, I posted in our internal Slack, does that count", UNCLEAR),
    ("I was going to post but didn't", UNCLEAR), ("Yes, I'll send you the link", UNCLEAR),
    ("I posted in the first week and will post again next week", UNCLEAR),
    ("Can you remind me what counts?", UNCLEAR), ("Sure", UNCLEAR), ("I saw your post, great tips!", UNCLEAR),
    ("Thanks for sharing these tips", UNCLEAR), ("Loved the post you shared!", UNCLEAR), ("Unsubscribe", UNCLEAR),
    ("Out of office until Monday", UNCLEAR), ("No worries at all!", UNCLEAR), ("Yes I did not", UNCLEAR),
    ("Absolutely not, I hate social media", UNCLEAR), ("✅❌", UNCLEAR), ("N", UNCLEAR), ("Y", UNCLEAR),
    ("No. Yes. I mean, I posted once.", UNCLEAR), ("Did post twice", UNCLEAR),
    ("Was on leave all month, nothing posted", UNCLEAR), ("Zero likes but I posted", UNCLEAR),
    ("As I wrote last week, I'm changing roles", UNCLEAR), ("I'd rather not say", UNCLEAR),
    ("I shared your email with my manager, she'll get back to you", UNCLEAR),
    ("Not sure what counts as sharing", UNCLEAR), ("No idea what you mean", UNCLEAR),
    ("No one told me I had to post", UNCLEAR), ("I have a question about the programme", UNCLEAR),
    ("Yes, let's talk next week", UNCLEAR), ("I'm leaving the company at the end of the month", UNCLEAR),
    ("Never mind", UNCLEAR), ("This is the third reminder, enough already", UNCLEAR),
    ("My colleague posted, I didn't", UNCLEAR), ("Not me, but my team posted twice", UNCLEAR),
    ("Posted? Not sure", UNCLEAR), ("Yes I'm happy to share next month", UNCLEAR),
    ("I wrote to you about this already", UNCLEAR), ("Yes, I got it", UNCLEAR), ("shared? no", UNCLEAR),
    ("no, wait, yes", UNCLEAR), ("Yes ok", UNCLEAR), ("ok thanks", UNCLEAR),
    ("You posted a great article last week", UNCLEAR), ("nobody reads my posts anyway", UNCLEAR),
    ("Never posted before, but did this month!", UNCLEAR), ("Not only posted, also commented", UNCLEAR),
    # no words of their own: a thumb, a link, nothing
    ("👍", EMPTY), ("", EMPTY), ("   \n\t ", EMPTY), ("https://www.linkedin.com/feed/update/123", EMPTY),
    # --- German
    ("Ja, zweimal gepostet", YES), ("Ja!", YES), ("Jep, einen Artikel geteilt", YES),
    ("Hab einen Beitrag über unser Team veröffentlicht", YES), ("Hab ich!", YES),
    ("Ja, habe zwei Posts kommentiert und einen geteilt", YES), ("Jo, auf LinkedIn gepostet", YES),
    ("Ja, hab zwei Posts geteilt und einen Artikel kommentiert. Grüße, Jan", YES),
    ("Ja, aber nur einen Kommentar", YES),
    ("Nein, diesen Monat nicht", NO), ("Nein", NO), ("Nö, keine Zeit", NO), ("Leider nicht", NO),
    ("Ich habe nichts gepostet", NO), ("Noch nicht", NO), ("Diesen Monat leider nichts", NO),
    ("Ne, war zu viel los", NO), ("Ich habe keinen Beitrag geteilt", NO), ("Nix", NO),
    ("Bis jetzt nichts", NO), ("Habe ich nicht, sorry", NO), ("Nein, leider keine Zeit gehabt", NO),
    ("Ich habe diesen Monat nichts veröffentlicht, sorry", NO), ("Hab leider nichts geteilt", NO),
    ("Nein. Nächsten Monat bestimmt!", NO),
    ("Vielleicht einmal", UNCLEAR), ("Ich werde nächste Woche etwas posten", UNCLEAR),
    ("Ja und nein", UNCLEAR), ("Zählt ein Kommentar?", UNCLEAR), ("Keine Ahnung mehr", UNCLEAR),
    ("Ich bin im Urlaub", UNCLEAR), ("Ich glaube, ich habe einmal gepostet", UNCLEAR),
    ("Danke für die Erinnerung", UNCLEAR), ("Bitte abmelden", UNCLEAR), ("Ich weiß nicht mehr", UNCLEAR),
    ("Ich habe einen Entwurf, aber noch nicht veröffentlicht", UNCLEAR), ("Danke, alles klar", UNCLEAR),
    ("Ja, verstanden", UNCLEAR), ("Niemand hat mir gesagt, dass ich posten soll", UNCLEAR),
    ("Ja, ich melde mich nächste Woche", UNCLEAR), ("Wann ist die nächste Sitzung?", UNCLEAR),
    ("Ich habe Ihre Mail an meine Chefin weitergeleitet", UNCLEAR),
    ("Nicht nur gepostet, auch kommentiert", UNCLEAR),
    # --- French
    ("Oui, j'ai publié un article", YES), ("Oui !", YES), ("Ouais, partagé deux posts", YES),
    ("J'ai commenté quelques publications de clients", YES), ("Oui, deux fois sur LinkedIn", YES),
    ("J'ai posté une photo du salon", YES), ("Bien sûr, publié mardi", YES),
    ("Oui, j'ai partagé la vidéo de l'équipe la semaine dernière", YES), ("Oui mais seulement un commentaire", YES),
    ("Non, pas ce mois-ci", NO), ("Je n'ai rien publié", NO), ("Non", NO), ("Rien ce mois-ci, désolé", NO),
    ("Pas encore", NO), ("Pas vraiment", NO), ("Malheureusement pas, pas eu le temps", NO),
    ("Je n'ai pas partagé", NO), ("Nan", NO), ("Non, je n'ai rien posté ce mois-ci", NO),
    ("Non désolé, pas eu le temps", NO), ("Pas du tout", NO), ("Non merci", NO),
    ("Oui et non", UNCLEAR), ("Je vais publier la semaine prochaine", UNCLEAR),
    ("Peut-être une fois", UNCLEAR), ("Est-ce que les commentaires comptent ?", UNCLEAR),
    ("Je suis en congé jusqu'au 3", UNCLEAR), ("Je ne sais pas", UNCLEAR), ("Merci beaucoup", UNCLEAR),
    ("Je pense avoir publié une fois", UNCLEAR), ("Je n'ai pas encore publié, je le ferai bientôt", UNCLEAR),
    ("Oui, je vous rappelle demain", UNCLEAR), ("Je ne sais pas quoi publier", UNCLEAR),
    ("Oui d'accord", UNCLEAR), ("Oui, bien reçu", UNCLEAR),
    # --- Spanish ("si" without its accent is a yes only as a clause of its own)
    ("Sí, compartí dos artículos", YES), ("Si, compartí dos", YES), ("¡Sí!", YES), ("Si", YES),
    ("Publiqué un artículo en LinkedIn", YES), ("Claro, subí un video", YES),
    ("Sí, comenté varias publicaciones", YES), ("Sip, lo hice", YES), ("Una vez", YES),
    ("Sí, publiqué algo el lunes", YES), ("Comparti dos articulos", YES),
    ("No, este mes no", NO), ("Nada este mes", NO), ("Todavía no", NO), ("No he publicado nada", NO),
    ("No, no tuve tiempo", NO), ("Para nada", NO), ("No compartí nada, lo siento", NO), ("Nop, nada", NO),
    ("No pude, mucho trabajo", NO), ("Tampoco este mes", NO),
    ("Sí y no", UNCLEAR), ("Quizás una vez", UNCLEAR), ("Lo publicaré mañana", UNCLEAR),
    ("¿Cuenta un comentario?", UNCLEAR), ("Si puedo, publico algo el viernes", UNCLEAR),
    ("Si tengo tiempo lo hago", UNCLEAR), ("No sé", UNCLEAR), ("Gracias", UNCLEAR), ("Creo que sí", UNCLEAR),
    ("Estoy de vacaciones", UNCLEAR), ("si publique 2 veces", UNCLEAR),
    ("No, pero comenté algunas publicaciones", UNCLEAR), ("Aún no, la semana que viene", UNCLEAR),
    ("Si me recuerdas la fecha, te digo", UNCLEAR), ("Sí, pero la próxima semana", UNCLEAR),
    ("No entiendo la pregunta", UNCLEAR), ("Vale, gracias", UNCLEAR), ("Sí, entendido", UNCLEAR),
    ("No solo publiqué uno, sino dos", UNCLEAR),
    # --- Japanese
    ("はい、2回投稿しました", YES), ("はい！", YES), ("LinkedInで記事をシェアしました！", YES),
    ("お客様の投稿にコメントしました。", YES), ("はい、しました", YES), ("ブログに記事を書きました。", YES),
    ("はい。LinkedInに2回投稿しました。", YES), ("うん、投稿したよ", YES),
    ("今月は投稿数は少ないですが、一度だけ投稿しました", YES),
    ("今月は投稿していません", NO), ("いいえ", NO), ("まだです", NO), ("いいえ、今月は何も投稿していません。", NO),
    ("今月は忙しくて投稿できませんでした。", NO), ("特にありません", NO), ("ううん、してない", NO),
    ("時間がなくて、何も投稿していません", NO), ("いいえ、まだ投稿していません", NO),
    ("今月は特に何もしていません", NO), ("すみません、今月はできませんでした", NO), ("いや、してない", NO),
    ("投稿はまだです", NO),
    ("来週投稿する予定です", UNCLEAR), ("多分1回くらい", UNCLEAR), ("投稿しましたか？", UNCLEAR),
    ("投稿したいです", UNCLEAR), ("今月はいそがしくて", UNCLEAR),  # not the はい of a yes
    ("先月は投稿しましたが、今月はまだです", UNCLEAR), ("投稿したかったのですが…", UNCLEAR),
    ("コメントは数えますか？", UNCLEAR), ("下書きはできています", UNCLEAR), ("はい、来週投稿します", UNCLEAR),
    ("はい、わかりました", UNCLEAR), ("今月はいろいろあって", UNCLEAR), ("投稿しようと思っています", UNCLEAR),
    ("了解です", UNCLEAR), ("承知しました", UNCLEAR),
    # every language's blockers apply to every reply: the 会 of 会社 is Chinese "will"
    ("はい、会社の記事をシェアしました", UNCLEAR),
    ("ありがとうございます", EMPTY),  # a pleasantry only, taken out as for any reply
]  # fmt: skip


@pytest.mark.parametrize(("text", "said"), REPLIES)
def test_what_a_check_in_reply_answers(text: str, said: Said) -> None:
    assert wording.read_answer(text).said is said


def test_the_corpus_is_large_and_each_reply_in_it_once() -> None:
    texts = [text for text, _ in REPLIES]
    assert len(texts) >= 120 and len(set(texts)) == len(texts)
    assert {said for _, said in REPLIES} == set(Said)


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("Yep, posted twice", "yes: 'yep' (English)"),
        ("Jep, einen Artikel geteilt", "yes: 'jep' (German)"),
        ("Si, compartí dos", "yes: 'si' (Spanish)"),
        ("はい、2回投稿しました", "yes: 'はい' (Japanese)"),
        ("LinkedInで記事をシェアしました", "yes: 'シェアしました' (Japanese)"),
        ("✅", "yes: '✅' (symbols)"),
        ("Nein, diesen Monat nicht", "no: 'nein' (German)"),
        ("Rien ce mois-ci", "no: 'rien' (French)"),
        ("Nada este mes", "no: 'nada este mes' (Spanish)"),
        ("今月は投稿していません", "no: 'していません' (Japanese)"),
        ("I haven't posted anything", "negation: 'haven't' before 'posted' (English)"),
        ("Je n'ai pas partagé", "negation: 'n'ai' before 'partagé' (French)"),
        ("Nothing shared this month", "no: 'nothing' before 'shared' (English)"),
        ("投稿はまだです", "not yet: 'まだ' (Japanese)"),
        ("Je pense que oui", "unsure: 'je pense' (French)"),
        ("I will post next week", "future: 'will' (English)"),
        ("Cuando tenga tiempo lo hago", "conditional: 'cuando' (Spanish)"),
        ("Ich bin im Urlaub", "away: 'urlaub' (German)"),
        ("Please stop sending me these", "complaint: 'stop' (English)"),
        ("Posted?", "question: a question mark"),
        ("Yes and no", "yes: 'yes' (English), but no: 'no' (English)"),
        ("Thanks!", "no yes or no"),
        ("", "no words of their own"),
    ],
)
def test_the_rule_names_the_phrase_and_its_language(text: str, rule: str) -> None:
    assert wording.read_answer(text).rule == rule


@pytest.mark.parametrize("text", ["", " ", "\n\n\t", "\u3000\u00a0", "   \r\n  "])
def test_nothing_but_space_is_empty(text: str) -> None:
    assert wording.read_answer(text) == Answered(EMPTY, "no words of their own")


def test_the_done_words_play_no_part() -> None:
    custom = wording.rules(("posted", "yes"))
    for text in ("Posted twice", "Done!", "Not yet posted", "Yes", "Sorted"):
        assert custom.read_answer(text) == wording.read_answer(text)
    assert wording.read_answer("Done!").said is UNCLEAR


def test_a_table_without_check_in_phrases_answers_nothing_clearly() -> None:
    rules = Rules({"xx": {"name": "X", "done": ["yay"], "future": ["soon"]}})
    assert rules.read_answer("yay").said is UNCLEAR and rules.read_answer("").said is EMPTY
    rules = Rules({"xx": {"name": "X", "yes": ["yay"], "no": ["nay"], "future": ["soon"]}})
    assert [rules.read_answer(text).said for text in ("yay", "nay", "yay soon", "yay nay")] == [
        YES, NO, UNCLEAR, UNCLEAR,
    ]  # fmt: skip


_TABLE = tomllib.loads(RULES_FILE.read_text(encoding="utf-8"))


def _phrases(*categories: str) -> list[str]:
    return sorted({phrase for entry in _TABLE.values() for c in categories for phrase in entry.get(c, [])})


_YES, _NO, _UNSURE = _phrases("yes", "yes_alone"), _phrases("no", "no_alone"), _phrases("unsure")


@pytest.mark.parametrize(
    ("phrases", "said"), [(_YES, YES), (_NO, NO), (_UNSURE, UNCLEAR)], ids=["yes", "no", "unsure"]
)
def test_each_phrase_of_the_table_on_its_own_answers_as_its_list_says(phrases: list[str], said: Said) -> None:
    answers = {phrase: wording.read_answer(phrase) for phrase in phrases}
    assert {phrase: found.rule for phrase, found in answers.items() if found.said is not said} == {}


_BLOCKERS = [
    "maybe", "next week", "any news?", "if that counts", "vielleicht", "nächste Woche", "peut-être",
    "la semaine prochaine", "quizás", "mañana", "たぶん", "来週", "unsubscribe",
]  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(_YES + _NO), st.sampled_from(_BLOCKERS), st.booleans())
def test_a_doubt_anywhere_keeps_a_yes_or_no_from_counting(said: str, blocker: str, before: bool) -> None:
    text = f"{blocker}. {said}." if before else f"{said}. {blocker}."
    assert wording.read_answer(text).said is UNCLEAR


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(_YES), st.sampled_from(_NO), st.booleans())
def test_a_yes_and_a_no_together_are_unclear(yes: str, no: str, yes_first: bool) -> None:
    text = f"{yes}. {no}." if yes_first else f"{no}. {yes}."
    assert wording.read_answer(text).said is UNCLEAR


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=400))
def test_any_text_gets_one_of_the_four_answers(text: str) -> None:
    found = wording.read_answer(text)
    assert found.said in set(Said) and found.rule
