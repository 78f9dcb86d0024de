"""Every HTML and CSS feature the emails use, checked against caniemail.com's support data for
Outlook (Windows and Outlook.com), Gmail (web, iOS, Android) and Apple Mail (macOS, iOS).

A feature one of those clients drops fails the test unless it is listed below with the reason the
email still reads right there (a fallback, or a cosmetic loss). The data comes from the caniemail
npm package, fetched by .ci/run; DRIP_TEST_CANIEMAIL names its caniemail.json.
"""

from __future__ import annotations

import json
import os
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from conftest import example_html

DATA = os.environ.get("DRIP_TEST_CANIEMAIL")
CLIENTS = [
    ("outlook", "windows"), ("outlook", "outlook-com"),
    ("gmail", "desktop-webmail"), ("gmail", "ios"), ("gmail", "android"),
    ("apple-mail", "macos"), ("apple-mail", "ios"),
]  # fmt: skip
#: (feature, client) pairs the data says are dropped, and why the emails still read right there
DROPPED_ON_PURPOSE = {
    ("css-border-radius", "outlook/windows"): "the button there is VML (v:roundrect) with its own corners",
    ("css-at-media", "outlook/windows"): "desktop only: the 600 px table is its layout",
    ("css-min-width", "outlook/windows"): "the button there is VML, 180 px wide whatever its words",
    (
        "css-at-media-prefers-color-scheme",
        "outlook/windows",
    ): "Outlook darkens mail itself; the light colours read",
    ("css-at-media-prefers-color-scheme", "gmail/desktop-webmail"): "Gmail darkens mail itself",
    ("css-at-media-prefers-color-scheme", "gmail/ios"): "Gmail darkens mail itself",
    ("css-at-media-prefers-color-scheme", "gmail/android"): "Gmail darkens mail itself",
    ("css-color-scheme", "outlook/windows"): "a hint only; the colours are set explicitly",
    ("css-color-scheme", "outlook/outlook-com"): "a hint only; the colours are set explicitly",
    ("css-color-scheme", "gmail/desktop-webmail"): "a hint only; the colours are set explicitly",
    ("css-color-scheme", "gmail/ios"): "a hint only; the colours are set explicitly",
    ("css-color-scheme", "gmail/android"): "a hint only; the colours are set explicitly",
    ("css-max-height", "outlook/windows"): "the preheader is hidden there by mso-hide:all",
    ("css-opacity", "outlook/windows"): "the preheader is hidden there by mso-hide:all",
    ("css-overflow", "outlook/windows"): "the preheader is hidden there by mso-hide:all",
    ("html-meta-color-scheme", "outlook/windows"): "a hint only; the colours are set explicitly",
    ("html-meta-color-scheme", "outlook/outlook-com"): "a hint only; the colours are set explicitly",
    ("html-meta-color-scheme", "gmail/desktop-webmail"): "a hint only; the colours are set explicitly",
    ("html-meta-color-scheme", "gmail/ios"): "a hint only; the colours are set explicitly",
    ("html-meta-color-scheme", "gmail/android"): "a hint only; the colours are set explicitly",
    ("html-meta-color-scheme", "apple-mail/ios"): "a hint only; its prefers-color-scheme styles apply",
}
#: a property's caniemail feature where its name alone does not say it (longhands, shorthands)
FAMILY = {
    "padding": "css-padding", "margin": "css-margin", "border-radius": "css-border-radius",
    "border": "css-border", "font": "css-font", "background": "css-background",
    "list-style": "css-list-style",
}  # fmt: skip
#: elements and attributes and their features
ELEMENTS = {"table": "html-table", "style": "html-style", "h1": "html-h1-h6", "h2": "html-h1-h6",
            "p": "html-p", "ol": "html-lists", "ul": "html-lists", "div": "html-div", "span": "html-span",
            "strong": "html-strong", "small": "html-small", "body": "html-body"}  # fmt: skip
ATTRIBUTES = {"lang": "html-lang", "role": "html-role", "cellpadding": "html-cellpadding",
              "cellspacing": "html-cellspacing", "width": "html-width", "height": "html-height",
              "align": "html-align", "valign": "html-valign"}  # fmt: skip

pytestmark = pytest.mark.skipif(
    not DATA and not os.environ.get("DRIP_TEST_REQUIRE_CANIEMAIL"),
    reason="DRIP_TEST_CANIEMAIL names no caniemail.json (npm pack caniemail; .ci/run fetches it)",
)


class _Features(HTMLParser):
    def __init__(self, known: set[str]) -> None:
        super().__init__(convert_charrefs=True)
        self.known = known
        self.used: dict[str, str] = {}  # feature: where it was seen first
        self.in_style = False

    def use(self, feature: str, where: str) -> None:
        if feature in self.known:
            self.used.setdefault(feature, where)

    def css(self, text: str, where: str) -> None:
        if "@media" in text:
            self.use("css-at-media", where)
        if "prefers-color-scheme" in text:
            self.use("css-at-media-prefers-color-scheme", where)
        if "!important" in text:
            self.use("css-important", where)
        for name, value in re.findall(r"([a-z-]+)\s*:\s*([^;{}]+)", text):
            family = next((f for prefix, f in FAMILY.items() if name == prefix or name.startswith(prefix + "-")
                           and not (prefix == "border" and name.startswith("border-radius"))), None)  # fmt: skip
            self.use(family or f"css-{name}", f"{where}: {name}")
            if name == "display" and value.strip().startswith("none"):
                self.use("css-display-none", where)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.use(ELEMENTS.get(tag, f"html-{tag}"), f"<{tag}>")
        for name, value in attrs:
            if name in ATTRIBUTES:
                self.use(ATTRIBUTES[name], f"<{tag} {name}>")
            if name == "style" and value:
                self.css(value, f"<{tag} style>")
            if name == "href" and (value or "").startswith("mailto:"):
                self.use("html-mailto-links", f"<{tag} href=mailto:>")
            if tag == "meta" and name == "name" and value == "color-scheme":
                self.use("html-meta-color-scheme", "<meta name=color-scheme>")
        self.in_style = tag == "style"

    def handle_endtag(self, tag: str) -> None:
        self.in_style = False

    def handle_data(self, data: str) -> None:
        if self.in_style:
            self.css(data, "<style>")

    def handle_comment(self, data: str) -> None:
        self.use("html-comments", "<!-- -->")


def latest(stats: dict, family: str, platform: str) -> str | None:
    versions = stats.get(family, {}).get(platform) or {}
    return next(reversed(versions.values()), None) if versions else None


def test_no_feature_the_main_clients_drop_without_a_fallback() -> None:
    assert DATA, "DRIP_TEST_REQUIRE_CANIEMAIL is set but DRIP_TEST_CANIEMAIL is not"
    features = {f["slug"]: f for f in json.loads(Path(DATA).read_text(encoding="utf-8"))["data"]}
    used: dict[str, str] = {}
    for step, html in example_html().items():
        finder = _Features(set(features))
        finder.feed(html)
        for feature, where in finder.used.items():
            used.setdefault(feature, f"{step} {where}")
    assert {"html-table", "css-padding", "html-comments", "css-border-radius"} <= set(used)
    dropped = {
        (feature, f"{family}/{platform}"): where
        for feature, where in used.items()
        for family, platform in CLIENTS
        if (latest(features[feature]["stats"], family, platform) or "").startswith("n")
    }
    unexplained = {key: where for key, where in dropped.items() if key not in DROPPED_ON_PURPOSE}
    assert unexplained == {}, "features a main client drops, with no fallback: " + json.dumps(
        {f"{feature} on {client}": where for (feature, client), where in unexplained.items()}, indent=1
    )
    stale = sorted(key for key in DROPPED_ON_PURPOSE if key not in dropped)
    assert stale == [], f"no longer used or no longer dropped; take them off the list: {stale}"
