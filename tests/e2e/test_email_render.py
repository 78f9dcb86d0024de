"""The emails as a phone and a desktop client render them, light and dark, in headless chromium.

Each check reads what the browser laid out: no sideways scrolling, a button and secondary links a
finger can hit (44 px), text that meets WCAG's 4.5:1 contrast on its own background, and the html
element's lang. Screenshots land in DRIP_TEST_SCREENSHOTS (or the test's temporary folder) for a
person to look at.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from conftest import example_html

CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")
STEPS = ("welcome", "short-kickoff", "short-overdue", "short-done", "policy", "short-escalation")
#: the example cohort's readers checked: (participant, language, the button's words); the others in
#: the steps whose layout differs most (a button, and the note after a reply)
READERS = {"en-GB": (1, "Mark it done"), "de": (5, "Als erledigt markieren"), "ja": (7, "完了を報告する")}
CASES = [("en-GB", step) for step in STEPS] + [
    (language, step) for language in ("de", "ja") for step in ("short-kickoff", "short-done")
]

#: the contrast of a colour pair (WCAG 2), in the page, over every text-bearing element with its
#: effective background: the first ancestor with a background colour that is not transparent
CONTRASTS = """
() => {
  const rgb = s => s.match(/[\\d.]+/g).slice(0, 4).map(Number);
  const lum = ([r, g, b]) => [r, g, b].map(c => { c /= 255; return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4 })
    .reduce((sum, c, i) => sum + c * [0.2126, 0.7152, 0.0722][i], 0);
  const background = el => {
    for (; el; el = el.parentElement) {
      const c = rgb(getComputedStyle(el).backgroundColor);
      if (c.length < 4 || c[3] > 0) return c;
    }
    return [255, 255, 255];
  };
  const out = [];
  for (const el of document.querySelectorAll('p, h1, li, a, td')) {
    const own = [...el.childNodes].some(n => n.nodeType === 3 && n.textContent.trim());
    const box = el.getBoundingClientRect();
    if (!own || box.width === 0 || getComputedStyle(el).display === 'none' || el.closest('.preheader')) continue;
    const [a, b] = [lum(rgb(getComputedStyle(el).color)), lum(background(el))].sort((x, y) => y - x);
    out.push({text: el.textContent.trim().slice(0, 40), ratio: (a + 0.05) / (b + 0.05)});
  }
  return out;
}
"""


def rendered() -> dict[tuple[str, str], str]:
    """The steps checked; the congratulations as after a reply, so that it offers to reopen."""
    html = {}
    for language, (reader, _) in READERS.items():
        html |= {(language, key): value for key, value in example_html(reader=reader).items() if key in STEPS}
        html[(language, "short-done")] = example_html({"short": "done"}, reader=reader)["short-done"]
    return html


HTML = rendered() if CHROMIUM else {}


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("width", [375, 600])
@pytest.mark.parametrize(("language", "step"), CASES)
def test_an_email_reads_and_taps_well(
    browser, shots: Path, language: str, step: str, width: int, scheme: str
) -> None:
    context = browser.new_context(viewport={"width": width, "height": 800}, color_scheme=scheme)
    done = READERS[language][1]
    try:
        page = context.new_page()
        page.set_content(HTML[(language, step)])
        assert page.evaluate("document.documentElement.lang") == language
        assert page.evaluate("document.documentElement.scrollWidth") <= width, "no sideways scrolling"
        body = page.evaluate("getComputedStyle(document.body).backgroundColor")
        assert (body == "rgb(17, 24, 39)") is (scheme == "dark"), body

        button = page.get_by_role("link", name=done)
        if step in ("short-kickoff", "short-overdue"):
            box = button.bounding_box()
            assert box is not None and box["height"] >= 44 and box["width"] >= 120, box
        else:
            assert button.count() == 0
        for link in page.locator("a").all():
            if (link.text_content() or "").strip() == done:
                continue
            box = link.bounding_box()
            assert box is not None and box["height"] >= 44, (link.text_content(), box)

        poor = [c for c in page.evaluate(CONTRASTS) if c["ratio"] < 4.5]
        assert poor == [], poor
        shot = shots / f"{step}-{language}-{width}-{scheme}.png"
        page.screenshot(path=shot, full_page=True)
        assert shot.stat().st_size > 5_000
    finally:
        context.close()
