"""The template pipeline: layouts, inlining once, text parts, strictness, and errors that say where."""

import os
import time
from pathlib import Path

import pytest

from drip.core.errors import TemplateError
from drip.core.render import Templates

LAYOUT = """<!DOCTYPE html>
<html><head><title>{% block subject %}{% endblock %}</title>
<style>
p { color: #123456; }
@media (max-width: 600px) { .wide { width: 100% !important; } }
</style></head>
<body><div class="preheader" style="display:none">{% block preheader %}{% endblock %}</div>
<table class="wide"><tr><td>
{% block body %}{% endblock %}
</td></tr>
{% if participant.vip %}<tr><td>VIP row</td></tr>{% endif %}
</table></body></html>
"""

STEP = """{% extends "layout.html" %}
{% block subject %}Hello {{ participant.name }}{% endblock %}
{% block preheader %}Hidden preview text{% endblock %}
{% block body %}
<p>Dear {{ participant.name }},</p>
<p><a href="{{ link }}">Open it</a> or <a href="https://example.com/x">https://example.com/x</a></p>
<ol><li>first</li><li>second</li></ol>
<ul>{% for item in items %}<li>{{ item }}</li>{% endfor %}</ul>
{% endblock %}
"""


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "layout.html").write_text(LAYOUT)
    (tmp_path / "step.html").write_text(STEP)
    return tmp_path


CONTEXT = {
    "participant": {"name": "Ana <b>&", "vip": True},
    "link": "https://d.example/done/a?b=1&c=2",
    "items": ["x", "y"],
}


def test_layout_inlined_css_and_tags_everywhere(folder: Path) -> None:
    rendered = Templates(folder).render("step", CONTEXT)
    assert rendered.subject == "Hello Ana <b>&"  # the subject is header text, not HTML
    assert '<p style="color:#123456">Dear Ana &lt;b&gt;&amp;,</p>' in rendered.html
    assert "@media (max-width: 600px)" in rendered.html and "width: 100% !important" in rendered.html
    assert 'href="https://d.example/done/a?b=1&amp;c=2"' in rendered.html  # a tag inside an attribute
    assert "<tr><td>VIP row</td></tr>" in rendered.html  # a tag between table rows stayed in place
    assert "Hidden preview text" in rendered.html


def test_text_part_keeps_links_readable(folder: Path) -> None:
    text = Templates(folder).render("step", CONTEXT).text
    assert "Dear Ana <b>&," in text  # not escaped in plain text
    assert "Open it (https://d.example/done/a?b=1&c=2) or https://example.com/x" in text
    assert "1. first\n2. second" in text
    assert "- x\n- y" in text  # items made by a loop are bulleted
    assert "Hidden preview text" not in text and "color" not in text


def test_a_hand_written_text_template_wins(folder: Path) -> None:
    (folder / "step.txt").write_text(
        "Hi {{ participant.name }}\n{% if participant.vip %}\nVIP\n{% endif %}\nBye\n"
    )
    assert Templates(folder).render("step", CONTEXT).text == "Hi Ana <b>&\nVIP\nBye\n"


def test_inlining_happens_once_per_template(
    folder: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import premailer

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "own"))  # not inlined by another test before
    calls = []
    real = premailer.Premailer
    monkeypatch.setattr(premailer, "Premailer", lambda *a, **k: calls.append(1) or real(*a, **k))
    templates = Templates(folder)
    for _ in range(50):
        templates.render("step", CONTEXT)
    assert len(calls) == 1


INLINE_IN_A_PROCESS = """
import json, sys
from pathlib import Path
import jinja2.compiler
generated = []
original = jinja2.compiler.generate
jinja2.compiler.generate = lambda *a, **k: generated.append(1) or original(*a, **k)
from drip.core.render import Templates
html = Templates(Path(sys.argv[1])).render("step", json.loads(sys.argv[2])).html
print(json.dumps(["premailer" in sys.modules or bool(generated), html]))
"""


def test_inlined_markup_is_kept_for_the_next_process(folder: Path, tmp_path: Path) -> None:
    """The first process to compile a template inlines its CSS and compiles its Jinja; the next reuses
    both, and neither loads premailer nor generates code. A cache folder that cannot be written
    changes nothing but the time it takes."""
    import json
    import subprocess
    import sys

    def compile_in_a_process(**env: str) -> tuple[bool, str]:
        done = subprocess.run(
            [sys.executable, "-c", INLINE_IN_A_PROCESS, str(folder), json.dumps(CONTEXT)],
            capture_output=True, text=True, check=True,
            env={**os.environ, "XDG_CACHE_HOME": str(tmp_path / ".cache"), **env},
        )  # fmt: skip
        loaded, html = json.loads(done.stdout)
        return loaded, html

    first, second = compile_in_a_process(), compile_in_a_process()
    assert first[0] is True and second[0] is False
    assert first[1] == second[1] and 'style="' in first[1]
    kept = list((tmp_path / ".cache" / "drip" / "inlined").iterdir())
    assert len(kept) == 1 and not kept[0].name.endswith(".tmp")
    assert len(list((tmp_path / ".cache" / "drip" / "compiled").iterdir())) >= 3  # subject, html, text

    blocked = tmp_path / "not-a-folder"
    blocked.write_text("")
    assert compile_in_a_process(XDG_CACHE_HOME=str(blocked)) == first


def test_inlining_without_a_home_folder_renders_and_leaves_no_files(
    folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A service under an arbitrary user id may have no HOME and no password entry; a relative
    XDG_CACHE_HOME is ignored, as the XDG rules say. Neither stops an email, nor writes anywhere."""

    def no_home() -> Path:
        raise RuntimeError("Could not determine home directory.")

    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setattr(Path, "home", staticmethod(no_home))
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/cache")
    rendered = Templates(folder).render("step", CONTEXT)
    assert 'style="' in rendered.html and "Ana &lt;b&gt;&amp;" in rendered.html
    assert list(work.iterdir()) == []


def test_a_changed_file_is_picked_up(folder: Path) -> None:
    templates = Templates(folder)
    templates.CHECK_EVERY = 0
    assert templates.render("step", CONTEXT).subject.startswith("Hello")
    time.sleep(0.01)
    (folder / "step.html").write_text(STEP.replace("Hello", "Greetings"))
    assert templates.render("step", CONTEXT).subject.startswith("Greetings")


@pytest.mark.parametrize(
    ("step", "context", "where", "what"),
    [
        (
            STEP.replace("Dear {{ participant.name }}", "Dear {{ participant.nmae }}"),
            CONTEXT,
            "step.html, line 5",
            "nmae",
        ),
        (
            STEP.replace("{% endblock %}\n", "{% endblok %}\n", 1),
            CONTEXT,
            "step.html, line 2",
            "never closed",
        ),
        (
            STEP.replace("Dear {{ participant.name }}", "Dear {{ participant.name|shout }}"),
            CONTEXT,
            "step.html, line 5",
            "shout",
        ),
        (STEP, {**CONTEXT, "items": None}, "step.html, line 8", "not iterable"),
        (STEP.replace("{{ item }}", "{{ item.__class__ }}"), CONTEXT, "step.html, line 8", "unsafe"),
        (
            STEP.replace("Hello {{ participant.name }}", "Hello {{ participant.surname }}"),
            CONTEXT,
            "step.html, line 2",
            "surname",
        ),
    ],
)
def test_errors_name_the_file_and_line(folder: Path, step: str, context: dict, where: str, what: str) -> None:
    (folder / "step.html").write_text(step)
    with pytest.raises(TemplateError) as caught:
        Templates(folder).render("step", context)
    assert where in str(caught.value) and what in str(caught.value)


def test_an_error_in_the_layout_names_the_layout(folder: Path) -> None:
    (folder / "layout.html").write_text(LAYOUT.replace("participant.vip", "participant.vip.x.y"))
    with pytest.raises(TemplateError, match=r"layout.html, line 11"):
        Templates(folder).render("step", {**CONTEXT, "participant": {"name": "A", "vip": None}})


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"step.html": "<p>{% block body %}x{% endblock %}</p>"}, "no subject"),
        ({"step.html": "<p>hi</p>{% extends 'layout.html' %}"}, "extends must come first"),
        ({"step.html": '{% include "step.html" %}'}, "includes itself"),
        ({"step.html": '{% extends "missing.html" %}'}, "missing.html: cannot be read"),
        ({"step.html": "{% extends layout_name %}"}, "name the file in quotes"),
        ({"step.html": "{% block subject %}x"}, "never closed"),
    ],
)
def test_structural_mistakes(folder: Path, files: dict, message: str) -> None:
    for name, text in files.items():
        (folder / name).write_text(text)
    with pytest.raises(TemplateError, match=message):
        Templates(folder).render("step", CONTEXT)


def test_the_sandbox_forbids_changing_the_context(folder: Path) -> None:
    (folder / "step.html").write_text(STEP.replace("{{ participant.name }},", "{{ items.append(1) }}"))
    with pytest.raises(TemplateError, match="unsafe|immutable|not safely callable"):
        Templates(folder).render("step", CONTEXT)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("<style>p { color: {{ colour }}; }</style>", "Jinja inside <style> is not supported"),
        ('<p style="color: {{ colour }}">x</p>', "Jinja inside a style attribute"),
        (
            '<p {% if participant.vip %}class="vip"{% endif %}>x</p>',
            "inside an HTML tag, outside an attribute's quotes",
        ),
    ],
)
def test_jinja_where_inlining_cannot_keep_it_is_refused_with_the_line(
    folder: Path, body: str, message: str
) -> None:
    (folder / "step.html").write_text(STEP.replace("<p>Dear {{ participant.name }},</p>", body))
    with pytest.raises(TemplateError) as caught:
        Templates(folder).render("step", CONTEXT)
    assert "step.html, line 5" in str(caught.value) and message in str(caught.value)


def test_an_unclosed_tag_is_reported_where_it_opens(folder: Path) -> None:
    (folder / "step.html").write_text(
        STEP.replace("<p>Dear {{ participant.name }},</p>", "{% if participant.vip %}<p>Dear</p>")
    )
    with pytest.raises(TemplateError, match=r"step.html, line 5: {% if %} is never closed"):
        Templates(folder).render("step", CONTEXT)


def test_outlook_conditional_comments_keep_their_tags(folder: Path) -> None:
    conditional = (
        '<!--[if mso]><table width="{{ width }}"><tr><td><![endif]--><p>Dear {{ participant.name }},</p>'
    )
    (folder / "step.html").write_text(STEP.replace("<p>Dear {{ participant.name }},</p>", conditional))
    rendered = Templates(folder).render("step", {**CONTEXT, "width": 480})
    assert '<!--[if mso]><table width="480"><tr><td><![endif]-->' in rendered.html
    assert "mso" not in rendered.text and "Dear Ana" in rendered.text


def test_text_part_cells_images_and_hidden_nested_content(folder: Path) -> None:
    body = (
        "<table><tr><td>Name</td><td>Deadline</td></tr></table>"
        '<p><a href="https://e.example"><img src="x.png" alt="Our logo"></a></p>'
        '<div style="display:none"><span>inner</span> after inner</div><p>visible</p>'
    )
    (folder / "step.html").write_text(STEP.replace("<p>Dear {{ participant.name }},</p>", body))
    text = Templates(folder).render("step", CONTEXT).text
    assert "Name Deadline" in text and "Our logo (https://e.example)" in text
    assert "after inner" not in text and "visible" in text


def test_errors_in_a_text_template_name_its_line(folder: Path) -> None:
    (folder / "step.txt").write_text("Hi {{ participant.name }}\n\n{{ participant.missing }}\n")
    with pytest.raises(TemplateError, match=r"step.txt, line 3: .*missing"):
        Templates(folder).render("step", CONTEXT)


def test_text_template_added_later_and_layout_removed(folder: Path) -> None:
    templates = Templates(folder)
    templates.CHECK_EVERY = 0
    templates.render("step", CONTEXT)
    (folder / "step.txt").write_text("Plain {{ participant.name }}\n")
    assert templates.render("step", CONTEXT).text == "Plain Ana <b>&\n"
    (folder / "layout.html").unlink()
    with pytest.raises(TemplateError, match="layout.html: cannot be read"):
        templates.render("step", CONTEXT)


def test_characters_the_parser_decoded_go_back_to_references_outside_style(folder: Path) -> None:
    """Inlining decodes ``&#8199;``; the compiled template writes it as a reference again, so an email
    whose substitutions are ASCII stays ASCII and is sent unencoded. CSS is left as it was."""
    layout = LAYOUT.replace("p { color: #123456; }", 'p { color: #123456; } .q::before { content: "»"; }')
    (folder / "layout.html").write_text(
        layout.replace("{% endblock %}</div>", "{% endblock %}&#8199;&#847;</div>")
    )
    (folder / "step.html").write_text(STEP.replace("Open it", "Open it — now"))
    rendered = Templates(folder).render("step", CONTEXT)
    assert "Hidden preview text&#8199;&#847;" in rendered.html
    assert "Open it &#8212; now" in rendered.html
    assert 'content:"»"' in rendered.html  # inside <style>, CSS keeps its own characters
    zoe = Templates(folder).render("step", {**CONTEXT, "participant": {"name": "Zoë", "vip": False}})
    assert "Dear Zoë,</p>" in zoe.html  # a value is written as it is; the message encodes it


def test_the_sandbox_shortcut_keeps_jinja_rules_for_dicts(folder: Path) -> None:
    """``x.items`` is still dict's method, not an item named "items"; a missing name is still an error;
    anything not a plain dict still passes the sandbox's checks."""
    body = "<p>{{ data.items() | list | length }} {{ data.colour }}</p>"
    (folder / "step.html").write_text(STEP.replace("<p>Dear {{ participant.name }},</p>", body))
    rendered = Templates(folder).render("step", {**CONTEXT, "data": {"items": "shadow", "colour": "teal"}})
    assert ">2 teal</p>" in rendered.html
    with pytest.raises(TemplateError, match="colour"):
        Templates(folder).render("step", {**CONTEXT, "data": {"items": "shadow"}})
    (folder / "step.html").write_text(
        STEP.replace("<p>Dear {{ participant.name }},</p>", "{{ data.__class__ }}")
    )
    with pytest.raises(TemplateError, match="unsafe"):
        Templates(folder).render("step", {**CONTEXT, "data": {"__class__": "x"}})


@pytest.mark.parametrize(
    ("call", "shown"),
    [
        ("data.get('colour')", ">teal<"),
        ("data.get('title', 'none')", ">none<"),
        ("data.get('title')", ">None<"),
    ],
)
def test_a_dict_get_reads_an_optional_item(folder: Path, call: str, shown: str) -> None:
    (folder / "step.html").write_text(
        STEP.replace("<p>Dear {{ participant.name }},</p>", f"<p>{{{{ {call} }}}}</p>")
    )
    assert shown in Templates(folder).render("step", {**CONTEXT, "data": {"colour": "teal"}}).html


@pytest.mark.parametrize(
    "call", ["data.pop('colour')", "data.setdefault('x', 1)", "data.get.__self__.clear()"]
)
def test_a_dict_cannot_be_changed_through_its_methods(folder: Path, call: str) -> None:
    (folder / "step.html").write_text(
        STEP.replace("<p>Dear {{ participant.name }},</p>", f"{{{{ {call} }}}}")
    )
    with pytest.raises(TemplateError, match="unsafe|immutable|not safely callable"):
        Templates(folder).render("step", {**CONTEXT, "data": {"colour": "teal"}})


def test_a_subject_is_rendered_again_whenever_what_it_reads_differs(folder: Path) -> None:
    """Subjects are reused between emails only when every value they read is the same."""
    templates = Templates(folder)
    ana = templates.render("step", CONTEXT)
    ben = templates.render("step", {**CONTEXT, "participant": {"name": "Ben", "vip": False}})
    again = templates.render("step", {**CONTEXT, "link": "https://d.example/other"})
    assert (ana.subject, ben.subject, again.subject) == ("Hello Ana <b>&", "Hello Ben", "Hello Ana <b>&")
    (folder / "step.html").write_text(STEP.replace("Hello {{ participant.name }}", "Hi {{ today }}"))
    changing = Templates(folder)
    days = [changing.render("step", {**CONTEXT, "today": day}).subject for day in ("Mon", "Tue", "Mon")]
    assert days == ["Hi Mon", "Hi Tue", "Hi Mon"]
