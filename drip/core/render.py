"""Templates: load a step's files, inline their CSS once, render a message's text.

Loading a step (``Templates.step``) does the expensive work once per template,
and again only when one of its files changes:

1. flatten the step and the layout it extends (and anything it includes)
   into one source, keeping where each line came from;
2. hide every Jinja tag behind a numbered HTML comment, which the HTML parser
   keeps in place even between table rows (inside an attribute it survives as
   escaped text);
3. inline the CSS with premailer (rules it cannot inline, such as ``@media``,
   stay in a ``<style>`` block), put the tags back, compile;
4. derive the plain-text part from the same HTML, links kept readable,
   unless the step has its own ``.txt`` template;
5. compile the subject from the ``subject`` block.

Rendering a message is then three compiled-template calls: tens of
microseconds, where premailer per message would cost milliseconds.

Templates run in Jinja's immutable sandbox, HTML autoescaped, every undefined
name an error. Supported beyond plain Jinja expressions and statements:
``{% extends "file" %}`` (first tag of a file), ``{% block name %}`` and
static ``{% include "file" %}``; ``super()`` and ``self`` are not.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import logging
import marshal
import os
import re
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from types import BuiltinMethodType
from typing import Any

import jinja2
import markupsafe
from jinja2 import StrictUndefined
from jinja2.sandbox import ImmutableSandboxedEnvironment

from drip.core.errors import TemplateError
from drip.core.languages import (
    DEFAULT_LANGUAGE,
    STRINGS_FILE,
    Strings,
    base_language,
    day_count,
    fallbacks,
    load_strings,
    long_date,
    short_date,
    text_direction,
    word_space,
)
from drip.core.memo import Memo

logger = logging.getLogger(__name__)

_TAG = re.compile(r"{%-?\s*(extends|block|endblock|include)\b\s*(.*?)\s*-?%}", re.S)
_JINJA = re.compile(r"{{.*?}}|{%.*?%}|{#.*?#}", re.S)
_PLACEHOLDER = re.compile(r"<!--drip(c?)(\d+)-->|&lt;!--drip(c?)(\d+)--&gt;")
_QUOTED = re.compile(r"""^["']([^"']+)["']$""")


@dataclass(frozen=True)
class Rendered:
    subject: str
    html: str
    text: str
    #: the email's language, a BCP 47 tag: the template's, with the participant's region when it is theirs
    language: str = DEFAULT_LANGUAGE


@dataclass(frozen=True)
class Choice:
    """Which template a step takes for one language, and the language the email is then in."""

    #: the template's file name without ``.html``: ``welcome`` or ``welcome.de``
    name: str
    language: str
    #: the participant's language had no template of its own: the email is in the program's
    fallback: bool = False


# --- flattening ------------------------------------------------------------------


@dataclass(frozen=True)
class _Piece:
    """Text from one file, beginning at ``line`` of it."""

    text: str
    file: Path
    line: int


@dataclass(frozen=True)
class _BlockMark:
    """Where a block sits; replaced by the block's final content."""

    name: str


_Node = _Piece | _BlockMark


@dataclass
class _Tree:
    """One file, or a file and the layouts it extends, with its blocks still apart."""

    body: list[_Node]
    blocks: dict[str, list[_Node]]
    files: list[Path]

    def expand(self, nodes: list[_Node] | None = None) -> list[_Piece]:
        out: list[_Piece] = []
        for node in self.body if nodes is None else nodes:
            out.extend(self.expand(self.blocks[node.name]) if isinstance(node, _BlockMark) else [node])
        return out


def _text(pieces: list[_Piece]) -> str:
    return "".join(piece.text for piece in pieces)


def _origins(pieces: list[_Piece]) -> list[tuple[Path, int]]:
    """Return, for each line of the joined text, the file and line it came from."""
    origins: list[tuple[Path, int]] = []
    fresh_line = True
    for piece in pieces:
        for offset, line in enumerate(piece.text.split("\n")):
            if offset:
                fresh_line = True
            if fresh_line and (line or offset < piece.text.count("\n")):
                origins.append((piece.file, piece.line + offset))
                fresh_line = False
    return origins


class _Flattener:
    """Resolve extends, blocks and static includes into one source."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def tree(self, name: str, seen: tuple[str, ...] = ()) -> _Tree:
        if name in seen:
            raise TemplateError(
                f"{self.folder / name}: extends or includes itself ({' -> '.join((*seen, name))})"
            )
        path = self.folder / name
        try:
            text = path.read_text(encoding="utf-8-sig")
        except OSError as exc:
            where = f" (named in {seen[-1]})" if seen else ""
            raise TemplateError(f"{path}: cannot be read{where}: {exc.strerror}") from None
        files = [path]
        body: list[_Node] = []
        blocks: dict[str, list[_Node]] = {}
        parent: str | None = None
        stack: list[tuple[str, list[_Node], int]] = []
        current = body
        position, line = 0, 1
        for match in _TAG.finditer(text):
            current.append(_Piece(text[position : match.start()], path, line))
            line += text.count("\n", position, match.end())
            tag_line = line - match.group(0).count("\n")
            position = match.end()
            kind, argument = match.group(1), match.group(2)
            if kind == "extends":
                if stack or any(isinstance(n, _BlockMark) or n.text.strip() for n in body):
                    raise TemplateError(f"{path}, line {tag_line}: extends must come first")
                parent = self._quoted(argument, path, tag_line)
            elif kind == "include":
                included = self.tree(self._quoted(argument, path, tag_line), (*seen, name))
                files += included.files
                current.extend(included.expand())
            elif kind == "block":
                if not argument:
                    raise TemplateError(f"{path}, line {tag_line}: a block needs a name")
                stack.append((argument.split()[0], current, tag_line))
                current = []
            else:
                if not stack:
                    raise TemplateError(f"{path}, line {tag_line}: endblock without a block")
                block, outer, _ = stack.pop()
                blocks[block] = current
                outer.append(_BlockMark(block))
                current = outer
        if stack:
            raise TemplateError(f"{path}, line {stack[-1][2]}: block {stack[-1][0]!r} is never closed")
        current.append(_Piece(text[position:], path, line))
        if parent is None:
            return _Tree(body, blocks, files)
        layout = self.tree(parent, (*seen, name))
        return _Tree(layout.body, {**layout.blocks, **blocks}, [*files, *layout.files])

    @staticmethod
    def _quoted(argument: str, path: Path, line: int) -> str:
        match = _QUOTED.match(argument)
        if match is None:
            raise TemplateError(f'{path}, line {line}: name the file in quotes, e.g. "layout.html"')
        return match.group(1)


# --- HTML to text ---------------------------------------------------------------------

_BLOCKS = {"p", "div", "table", "tr", "h1", "h2", "h3", "h4", "ul", "ol", "blockquote", "section"}
_SKIP = {"head", "style", "script", "title"}
_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class _TextMaker(HTMLParser):
    """Turn the step's HTML (with Jinja tags hidden) into a plain-text template."""

    def __init__(self, tags: list[str]) -> None:
        super().__init__(convert_charrefs=True)
        self.tags = tags
        self.out: list[str] = []
        self.open: list[str] = []  # elements open now (void ones never are)
        self.hidden_at: int | None = None  # depth of the element that hides what is inside it
        self.links: list[str | None] = []
        self.counters: list[int | None] = []  # per open list: the next number, or None when bulleted
        self.numbered_yet = False

    @property
    def skipping(self) -> bool:
        return self.hidden_at is not None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag not in _VOID:
            self.open.append(tag)
        if self.skipping:
            return
        style = (values.get("style") or "").replace(" ", "").lower()
        if tag in _SKIP or "display:none" in style or "preheader" in (values.get("class") or "").split():
            self.hidden_at = len(self.open) if tag not in _VOID else None
            return
        if tag in ("ol", "ul"):
            self.counters.append(1 if tag == "ol" else None)
            self.numbered_yet = False
        if tag in _BLOCKS:
            self.out.append("\n\n")
        elif tag == "br":
            self.out.append("\n")
        elif tag == "img" and values.get("alt"):
            self.out.append(_restore(values["alt"] or "", self.tags))
        elif tag == "li":
            self.numbered_yet = True
            number = self.counters[-1] if self.counters else None
            if number is None:
                self.out.append("\n- ")
            else:
                self.out.append(f"\n{number}. ")
                self.counters[-1] = number + 1
        elif tag == "a":
            self.links.append(_restore(values.get("href") or "", self.tags))
            self.out.append("\x01")  # where the label starts

    def handle_endtag(self, tag: str) -> None:
        if tag in _VOID or tag not in self.open:
            return
        while self.open and self.open.pop() != tag:  # close what was left open inside it
            pass
        if self.hidden_at is not None:
            if len(self.open) < self.hidden_at:
                self.hidden_at = None
            return
        if tag in ("ol", "ul") and self.counters:
            self.counters.pop()
        if tag in _BLOCKS:
            self.out.append("\n\n")
        elif tag in ("td", "th"):
            self.out.append(" ")
        elif tag == "a" and self.links:
            href = self.links.pop()
            start = max(i for i, part in enumerate(self.out) if part == "\x01")
            label = " ".join("".join(self.out[start + 1 :]).split())
            del self.out[start:]
            self.out.append(label if not href or href == label else f"{label} ({href})")

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            self.out.append(re.sub(r"\s+", " ", data))

    def handle_comment(self, data: str) -> None:
        match = re.fullmatch(r"drip(\d+)", data)
        if match and not self.skipping:
            tag = self.tags[int(match.group(1))]
            if self.counters and not self.numbered_yet and re.match(r"{%-?\s*for\b", tag):
                self.counters[-1] = None  # items made by a loop cannot be numbered here: bullets
            self.out.append(tag)

    def text(self) -> str:
        raw = "".join(self.out)
        lines = [" ".join(line.split()) if "{" not in line else line.strip() for line in raw.split("\n")]
        return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip() + "\n"


def _restore(text: str, tags: list[str], comments: list[str] | None = None) -> str:
    """Put back the Jinja tags (and HTML comments) that were hidden from the HTML parser."""

    def back(match: re.Match[str]) -> str:
        kind, number = (
            (match.group(1), match.group(2)) if match.group(2) else (match.group(3), match.group(4))
        )
        return (comments or [])[int(number)] if kind else tags[int(number)]

    return _PLACEHOLDER.sub(back, text)


# --- environments and filters ---------------------------------------------------------


#: names a template's ``x.name`` finds on a dict before its items (``items``, ``keys`` ...)
_DICT_ATTRIBUTES = frozenset(dir(dict))


class _Sandbox(ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox, with the common case made cheap.

    ``participant.first_name`` on a context dict costs the sandbox a failed
    attribute lookup (an exception) before it reads the item. For a plain dict
    and a name that is not one of dict's own attributes, the item is what the
    sandbox returns in the end, so it is returned at once; everything else
    takes the sandbox's own checks. So does ``x.get(...)`` on a plain dict,
    which the templates use for optional roster columns: reading an item is
    allowed, and ``get`` changes nothing.
    """

    def getattr(self, obj: Any, attribute: str) -> Any:
        if type(obj) is dict:
            if attribute not in _DICT_ATTRIBUTES:
                try:
                    return obj[attribute]
                except KeyError:
                    pass
            elif attribute == "get":
                return obj.get
        return super().getattr(obj, attribute)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805 - as Jinja's
        if type(__obj) is BuiltinMethodType and __obj.__name__ == "get" and type(__obj.__self__) is dict:
            return __obj(*args, **kwargs)
        return super().call(__context, __obj, *args, **kwargs)


def _environment(
    *, html: bool, trim: bool, language: str = DEFAULT_LANGUAGE
) -> ImmutableSandboxedEnvironment:
    env = _Sandbox(
        autoescape=html,
        undefined=StrictUndefined,
        trim_blocks=trim,
        lstrip_blocks=trim,
        keep_trailing_newline=True,
    )
    env.filters.update(
        longdate=functools.partial(_dated, long_date, language),
        shortdate=functools.partial(_dated, short_date, language),
        days=functools.partial(_counted, language),
    )
    return env


def _dated(write: Any, language: str, value: dt.date) -> str:
    return str(write(value, language))


def _counted(language: str, count: int) -> str:
    return day_count(count, language)


@dataclass(frozen=True)
class _Environments:
    """The three environments a step compiles in, their filters writing dates in one language."""

    html: ImmutableSandboxedEnvironment
    #: for hand-written .txt templates, where a tag on its own line should leave no blank line
    text: ImmutableSandboxedEnvironment
    #: for text made from the HTML, whose line breaks come from the markup, not from the tags
    derived: ImmutableSandboxedEnvironment


@functools.lru_cache(maxsize=64)
def _environments(language: str) -> _Environments:
    return _Environments(
        _environment(html=True, trim=False, language=language),
        _environment(html=False, trim=True, language=language),
        _environment(html=False, trim=False, language=language),
    )


_TEXT_ENV = _environments(DEFAULT_LANGUAGE).text


def _translator(strings: Strings) -> Any:
    """Return the templates' ``_``: ``_("Mark it done")``, ``_("run by {sender}", sender=...)``.

    The translation is text; in HTML it is escaped, and so is every value put into it.
    """

    @jinja2.pass_eval_context
    def translate(eval_context: Any, text: str, **values: Any) -> str:
        said = strings.get(text)
        if eval_context.autoescape:
            return markupsafe.Markup(markupsafe.escape(said)).format(**values)
        return said.format(**{name: str(value) for name, value in values.items()})

    return translate


@functools.lru_cache(maxsize=1024)
def _code(html: bool, trim: bool, source: str, label: str) -> Any:
    """Compile, or take the code from drip's cache folder, where it is kept as Jinja's own bytecode
    cache keeps it (``marshal``, under a hash of the source, the settings and both versions)."""
    kept, found = _kept(
        "compiled", f"{sys.version}\0jinja2 {jinja2.__version__}\0{html}\0{trim}\0{label}", source
    )
    if found is not None:
        try:
            return marshal.loads(found)
        except (EOFError, ValueError, TypeError):
            pass
    code = _environment(html=html, trim=trim).compile(source, name=label, filename=label)
    if kept is not None:
        _keep(kept, marshal.dumps(code))
    return code


def _compiled(env: jinja2.Environment, source: str, label: str) -> Any:
    """Return the code of ``source``, compiled once for all languages: the code looks its filters up
    in the environment it is bound to, so a German and a British step share it where their text
    is the same (en-GB, en-IN and en-AU readers of the English templates)."""
    if isinstance(env, _Sandbox):
        return _code(bool(env.autoescape), env.trim_blocks, source, label)
    return env.compile(source, name=label, filename=label)


def _compile(
    env: jinja2.Environment, source: str, label: str, extra: Mapping[str, Any] | None = None
) -> jinja2.Template:
    """Compile with a file name, so that runtime errors carry a template line."""
    code = _compiled(env, source, label)
    # A plain dict, not Jinja's ChainMap: every render copies the globals, and a ChainMap is slow to copy.
    return env.template_class.from_code(env, code, {**env.make_globals(None), **(extra or {})}, None)


# --- compiled steps -------------------------------------------------------------------------


@dataclass(frozen=True)
class CompiledStep:
    name: str
    files: tuple[Path, ...]
    subject: jinja2.Template
    html: jinja2.Template
    text: jinja2.Template
    #: the flattened HTML before inlining, and where each of its lines came from: for error messages
    reference: jinja2.Template
    origins: tuple[tuple[Path, int], ...]
    subject_origins: tuple[tuple[Path, int], ...]
    #: for a hand-written text template
    text_origins: tuple[tuple[Path, int], ...] | None
    #: what the subject reads from its context (``template_inputs``); None if that cannot be told
    subject_inputs: tuple[tuple[str, str | None], ...] | None = None
    #: subjects rendered so far, by ``subject_key``: most people of a cohort share a handful
    subjects: Memo[tuple[Any, ...], str] = field(default_factory=Memo, compare=False, repr=False)

    def subject_key(self, context: Mapping[str, Any]) -> tuple[Any, ...] | None:
        """Return a key equal for two contexts whenever the subject renders the same from both,
        or None when that cannot be told (see ``inputs_key``)."""
        return None if self.subject_inputs is None else inputs_key(self.subject_inputs, context)


class Templates:
    """The templates of one program folder, compiled on first use and when a file changes.

    ``language`` is the language the program's own templates (``STEP.html``) are written in.
    """

    #: how often, at most, a step's files are checked for changes
    CHECK_EVERY = 1.0

    def __init__(self, folder: Path, language: str = DEFAULT_LANGUAGE) -> None:
        self.folder = folder
        self.language = language
        self._cache: dict[tuple[str, str], tuple[tuple[float, ...], CompiledStep]] = {}
        self._checked: dict[tuple[str, str], float] = {}
        self._choices: dict[tuple[str, str], tuple[float, Choice]] = {}

    def choose(self, name: str, language: str | None) -> Choice:
        """Return the template step ``name`` takes for a reader of ``language`` (None: the program's).

        ``STEP.fr-CA.html``, then ``STEP.fr.html``, then ``STEP.html``; see drip.core.languages.
        """
        tag = language or self.language
        now = time.monotonic()
        cached = self._choices.get((name, tag))
        if cached is not None and now - cached[0] < self.CHECK_EVERY:
            return cached[1]
        choice = next(
            (
                Choice(f"{name}.{candidate}", tag)
                for candidate in fallbacks(tag)
                if (self.folder / f"{name}.{candidate}.html").is_file()
            ),
            None,
        )
        if choice is None:
            ours = base_language(tag) == base_language(self.language)
            choice = Choice(name, tag if ours else self.language, fallback=not ours)
        self._choices[(name, tag)] = (now, choice)
        return choice

    def strings(self, language: str) -> Strings:
        """Return the fixed strings of ``language`` (``strings.LANG.toml``), read again when changed."""
        return program_strings(self.folder, language, self.CHECK_EVERY)

    def step(self, name: str, language: str | None = None) -> CompiledStep:
        """Return the compiled templates of template ``name`` (without extension), its dates and fixed
        strings in ``language`` (None: the program's)."""
        key = (name, language or self.language)
        cached = self._cache.get(key)
        if cached is not None:
            now = time.monotonic()
            if now - self._checked.get(key, 0.0) < self.CHECK_EVERY:
                return cached[1]
            self._checked[key] = now
            if cached[0] == _stamps(cached[1].files):
                return cached[1]
        strings = self.strings(key[1])
        compiled = _compile_step(self.folder, name, key[1], strings)
        self._cache[key] = (_stamps(compiled.files), compiled)
        self._checked[key] = time.monotonic()
        return compiled

    def render(self, name: str, context: Mapping[str, Any], language: str | None = None) -> Rendered:
        """Render step template ``name`` for a reader of ``language`` (None: the program's); a template
        mistake raises TemplateError naming file and line.

        ``context`` should be made for the language of ``choose(name, language)``, which this takes.
        """
        choice = self.choose(name, language)
        step = self.step(choice.name, choice.language)
        try:
            subject = _subject(step, context)
            html = step.html.render(context)
            text = _tidy_text(step.text.render(context))
        except Exception as exc:  # noqa: BLE001 - any template failure is reported with its place
            raise _locate(step, context, exc) from None
        if not subject:
            path, line = (
                step.subject_origins[0] if step.subject_origins else (self.folder / f"{choice.name}.html", 1)
            )
            raise TemplateError(f"{path}, line {line}: the subject is empty")
        return Rendered(subject, html, text, choice.language)


#: the strings files read so far, by folder and language: when last checked, their stamps, what they say
_STRINGS: dict[tuple[Path, str], tuple[float, tuple[float, ...], Strings]] = {}


def program_strings(folder: Path, language: str, check_every: float = Templates.CHECK_EVERY) -> Strings:
    """Return the fixed strings of ``language`` in ``folder``, read again when a file changes (looked at
    most every ``check_every`` seconds): the emails and the link pages read them the same way."""
    now = time.monotonic()
    cached = _STRINGS.get((folder, language))
    if cached is not None and now - cached[0] < check_every:
        return cached[2]
    stamps = _stamps(tuple(folder / STRINGS_FILE.format(tag) for tag in fallbacks(language)))
    if cached is not None and stamps == cached[1]:
        strings = cached[2]
    else:
        strings = load_strings(folder, language)
    _STRINGS[(folder, language)] = (now, stamps, strings)
    return strings


def _subject(step: CompiledStep, context: Mapping[str, Any]) -> str:
    """Render the subject, or reuse it when everything it reads is as it was for an earlier email."""

    def render() -> str:
        return " ".join(step.subject.render(context).split())

    key = step.subject_key(context)
    return render() if key is None else step.subjects.get(key, render)


def _stamps(files: tuple[Path, ...]) -> tuple[float, ...]:
    """Return each file's modification time; -1 for one that does not exist (yet, or any more)."""
    stamps = []
    for path in files:
        try:
            stamps.append(path.stat().st_mtime_ns)
        except OSError:
            stamps.append(-1)
    return tuple(stamps)


def _tidy_text(text: str) -> str:
    lines = [line.rstrip() for line in text.split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip() + "\n"


def _inline_css(markup: str) -> str:
    """Return ``markup`` with its stylesheet moved into style attributes, as email clients need.

    Premailer (with cssutils and requests) takes a tenth of a second to import, which every
    ``drip run`` paid again. Its result depends only on the markup and on its own version, so
    it is kept in drip's cache folder (``$XDG_CACHE_HOME/drip``, else ``~/.cache/drip``) under
    the hash of both; a cache that cannot be read or written, or a process with no home folder
    (a service under an arbitrary user id), simply does without.
    """
    from importlib.metadata import version

    kept, found = _kept(
        "inlined", f"premailer {version('premailer')}, cssutils {version('cssutils')}", markup
    )
    if found is not None:
        try:
            return found.decode("utf-8")
        except UnicodeDecodeError:
            pass
    from premailer import Premailer  # only when the cache has not got it: it takes a while to import

    inlined: str = Premailer(
        markup,
        keep_style_tags=False,
        strip_important=False,
        remove_classes=False,
        disable_link_rewrites=True,
        allow_network=False,
        disable_validation=True,
        cssutils_logging_level=logging.CRITICAL,
    ).transform(pretty_print=False)
    if kept is not None:
        _keep(kept, inlined.encode("utf-8"))
    return inlined


def _kept(kind: str, versions: str, source: str) -> tuple[Path | None, bytes | None]:
    """Return where drip's cache folder keeps what ``source`` makes under ``versions``, and what is
    kept there (None if nothing, or no cache folder)."""
    folder = _cache_folder()
    if folder is None:
        return None, None
    path = folder / kind / hashlib.sha256(f"{versions}\0{source}".encode()).hexdigest()
    try:
        return path, path.read_bytes()
    except OSError:
        return path, None


def _keep(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` in drip's cache folder whole or not at all; a failure is no matter."""
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.tmp")
        partial.write_bytes(data)
        partial.replace(path)  # whole or not at all, whichever process writes it
    except OSError:
        pass


def _cache_folder() -> Path | None:
    """Return drip's cache folder; None when the process has no home folder to put it in."""
    given = os.environ.get("XDG_CACHE_HOME", "")
    if os.path.isabs(given):  # the XDG rule: a relative path is ignored
        return Path(given) / "drip"
    try:
        return Path.home() / ".cache" / "drip"
    except RuntimeError:  # no HOME, and no password entry for this user id
        return None


def _compile_step(
    folder: Path, name: str, language: str = DEFAULT_LANGUAGE, strings: Strings | None = None
) -> CompiledStep:
    envs = _environments(language)
    extra = {
        "_": _translator(strings or Strings(language)),
        # what the layout's <html lang=... dir=...> says
        "language": language,
        "direction": text_direction(language),
        # between two fixed strings: a space, or nothing where the language has none
        "space": word_space(language),
    }
    flattener = _Flattener(folder)
    tree = flattener.tree(f"{name}.html")
    pieces = tree.expand()
    flat, origins = _text(pieces), _origins(pieces)
    default = folder / f"{name}.html"
    reference = _compile_checked(envs.html, flat, f"<drip:{name}>", origins, default, extra)
    _refuse_unsupported(flat, origins, default)

    if "subject" not in tree.blocks:
        raise TemplateError(f"{default}: no subject; add {{% block subject %}}...{{% endblock %}}")
    subject_pieces = tree.expand(tree.blocks["subject"])
    subject_origins = _origins(subject_pieces)
    subject_source = _text(subject_pieces)
    subject = _compile_checked(
        envs.text, subject_source, f"<drip:{name}:subject>", subject_origins, default, extra
    )

    hidden, tags, comments = _hide(flat)
    inlined = _inline_css(hidden)
    html = _compile_checked(
        envs.html, _restore(_char_refs(inlined), tags, comments), f"<drip:{name}:inlined>", [], default, extra
    )

    files = list(dict.fromkeys(tree.files))
    text_file = folder / f"{name}.txt"
    text_origins: tuple[tuple[Path, int], ...] | None = None
    if text_file.exists():
        text_tree = flattener.tree(text_file.name)
        text_pieces = text_tree.expand()
        files += [f for f in text_tree.files if f not in files]
        text_origins = tuple(_origins(text_pieces))
        text = _compile_checked(
            envs.text, _text(text_pieces), f"<drip:{name}:text>", list(text_origins), text_file, extra
        )
    else:
        maker = _TextMaker(tags)
        maker.feed(hidden)
        maker.close()
        text = _compile_checked(envs.derived, maker.text(), f"<drip:{name}:text>", [], default, extra)
    if text_file not in files:
        files.append(text_file)  # watched, so that creating it later is noticed
    return CompiledStep(
        name,
        tuple(files),
        subject,
        html,
        text,
        reference,
        tuple(origins),
        tuple(subject_origins),
        text_origins,
        template_inputs(subject_source),
    )


def fixed_strings(folder: Path) -> set[str]:
    """Return the text of every ``_("...")`` in the templates of ``folder``: what strings files translate."""
    found: set[str] = set()
    for path in sorted(folder.glob("*.html")):
        try:
            tree = _TEXT_ENV.parse(path.read_text(encoding="utf-8-sig"))
        except (OSError, UnicodeDecodeError, jinja2.TemplateSyntaxError):
            continue  # reported where the template is compiled
        for call in tree.find_all(jinja2.nodes.Call):
            if (
                isinstance(call.node, jinja2.nodes.Name)
                and call.node.name == "_"
                and call.args
                and isinstance(call.args[0], jinja2.nodes.Const)
                and isinstance(call.args[0].value, str)
            ):
                found.add(" ".join(call.args[0].value.split()))
    return found


# --- what a template reads ------------------------------------------------------------------

# Statements that bring names of their own, or other templates, into a template: their reads
# cannot be told from the names alone.
_OPAQUE = (
    jinja2.nodes.For, jinja2.nodes.Assign, jinja2.nodes.AssignBlock, jinja2.nodes.Macro,
    jinja2.nodes.CallBlock, jinja2.nodes.FilterBlock, jinja2.nodes.With, jinja2.nodes.Import,
    jinja2.nodes.FromImport, jinja2.nodes.Include, jinja2.nodes.Extends, jinja2.nodes.Block,
)  # fmt: skip


def template_inputs(source: str) -> tuple[tuple[str, str | None], ...] | None:
    """Return what a text template reads from its context: (name, attribute) for ``name.attribute``
    or ``name["attribute"]``, (name, None) for a whole value; None when it cannot be told.

    Checking a cohort renders each subject for every participant; two participants
    whose inputs are equal get the same subject, so it is checked once.
    """
    tree = _TEXT_ENV.parse(source)
    if next(tree.find_all(_OPAQUE), None) is not None:
        return None
    found: set[tuple[str, str | None]] = set()

    def visit(node: jinja2.nodes.Node) -> None:
        if isinstance(node, jinja2.nodes.Getattr) and isinstance(node.node, jinja2.nodes.Name):
            found.add((node.node.name, node.attr))
        elif (
            isinstance(node, jinja2.nodes.Getitem)
            and isinstance(node.node, jinja2.nodes.Name)
            and isinstance(node.arg, jinja2.nodes.Const)
            and isinstance(node.arg.value, str)
        ):
            found.add((node.node.name, node.arg.value))
        elif isinstance(node, jinja2.nodes.Name):
            found.add((node.name, None))
        else:
            for child in node.iter_child_nodes():
                visit(child)

    visit(tree)
    return tuple(sorted(found, key=lambda pair: (pair[0], pair[1] or "")))


_NO_KEY: Any = object()


def inputs_key(
    inputs: Sequence[tuple[str, str | None]], context: Mapping[str, Any]
) -> tuple[Any, ...] | None:
    """Return the values ``inputs`` name in ``context``, as a hashable key; None if one of them is
    missing or not plain data (a function, an object), whose equality says nothing about what
    it renders."""
    key: list[Any] = []
    for name, attribute in inputs:
        value = context.get(name, _NO_KEY)
        if attribute is not None:
            value = value.get(attribute, _NO_KEY) if isinstance(value, dict) else _NO_KEY
        frozen = _frozen(value)
        if frozen is None:
            return None
        key.append(frozen)
    return tuple(key)


def _frozen(value: Any) -> Any:
    if value is None:
        return ("None",)
    if isinstance(value, dict):
        items = [(key, _frozen(item)) for key, item in value.items()]
        return None if any(item is None for _, item in items) else ("dict", tuple(items))
    if isinstance(value, list | tuple):
        items = [_frozen(item) for item in value]
        return None if any(item is None for item in items) else ("seq", tuple(items))
    if isinstance(value, str | int | float | bool | dt.date):
        return (type(value).__name__, value)
    return None


def _where(lineno: int | None, origins: Sequence[tuple[Path, int]], default: Path) -> str:
    if lineno and 0 < lineno <= len(origins):
        path, line = origins[lineno - 1]
        return f"{path}, line {line}"
    return str(default)


_OPENERS = re.compile(r"{%-?\s*(end)?(if|for|with|macro|call|filter|raw|autoescape|trans)\b", re.S)


def _compile_checked(
    env: jinja2.Environment,
    source: str,
    label: str,
    origins: Sequence[tuple[Path, int]],
    default: Path,
    extra: Mapping[str, Any] | None = None,
) -> jinja2.Template:
    """Compile, turning a syntax error into a TemplateError at the file and line it came from."""
    try:
        return _compile(env, source, label, extra)
    except jinja2.TemplateSyntaxError as exc:
        lineno, message = exc.lineno, exc.message or str(exc)
        if "Unexpected end of template" in message:
            # Jinja reports the end of the (flattened) source; the mistake is the tag left open.
            stack: list[tuple[str, int]] = []
            for match in _OPENERS.finditer(source):
                if match.group(1):
                    if stack and stack[-1][0] == match.group(2):
                        stack.pop()
                else:
                    stack.append((match.group(2), source.count("\n", 0, match.start()) + 1))
            if stack:
                keyword, lineno = stack[-1]
                message = f"{{% {keyword} %}} is never closed; add {{% end{keyword} %}}"
        raise TemplateError(f"{_where(lineno, origins, default)}: {message}") from None


_START_TAG = re.compile(r"""<[A-Za-z](?:"[^"]*"|'[^']*'|{{.*?}}|{%.*?%}|[^'">])*>""", re.S)
_STYLE_BLOCK = re.compile(r"<style\b.*?</style>", re.S | re.I)
_STYLE_ATTRIBUTE = re.compile(r"""\bstyle\s*=\s*("[^"]*"|'[^']*')""", re.I)


def _refuse_unsupported(flat: str, origins: Sequence[tuple[Path, int]], default: Path) -> None:
    """Refuse Jinja where the CSS is inlined at load, or where it would break the HTML parse."""

    def fail(position: int, message: str) -> None:
        raise TemplateError(f"{_where(flat.count(chr(10), 0, position) + 1, origins, default)}: {message}")

    for block in _STYLE_BLOCK.finditer(flat):
        if "{{" in block.group(0) or "{%" in block.group(0):
            fail(block.start(), "Jinja inside <style> is not supported: the CSS is inlined once, when the "
                 "template loads; choose between classes instead")  # fmt: skip
    for tag in _START_TAG.finditer(flat):
        text = tag.group(0)
        for attribute in _STYLE_ATTRIBUTE.finditer(text):
            if "{{" in attribute.group(1) or "{%" in attribute.group(1):
                fail(tag.start(), "Jinja inside a style attribute is not supported: styles are merged when "
                     "the template loads; choose between classes instead")  # fmt: skip
        outside_quotes = re.sub(r""""[^"]*"|'[^']*'""", "", text)
        if "{{" in outside_quotes or "{%" in outside_quotes:
            fail(tag.start(), "a Jinja tag inside an HTML tag, outside an attribute's quotes, is not "
                 "supported; put the condition around the whole element")  # fmt: skip


_COMMENT = re.compile(r"<!--.*?-->", re.S)
_NON_ASCII = re.compile(r"[^\x00-\x7f]")
_STYLE_SPLIT = re.compile(r"(<style\b.*?</style>)", re.S | re.I)


def _char_refs(html: str) -> str:
    """Write non-ASCII characters of the markup as character references (outside ``<style>``, where
    CSS does not read them), as the template's author often did before the HTML parser decoded
    them: a message whose every substitution is ASCII then goes without encoding."""

    def refs(text: str) -> str:
        return _NON_ASCII.sub(lambda match: f"&#{ord(match.group())};", text)

    return "".join(part if n % 2 else refs(part) for n, part in enumerate(_STYLE_SPLIT.split(html)))


def _hide(flat: str) -> tuple[str, list[str], list[str]]:
    """Hide HTML comments (kept whole, e.g. Outlook's conditional ones), then Jinja tags."""
    comments: list[str] = []
    tags: list[str] = []

    def hide_comment(match: re.Match[str]) -> str:
        comments.append(match.group(0))
        return f"<!--dripc{len(comments) - 1}-->"

    def hide_tag(match: re.Match[str]) -> str:
        if match.group(0).startswith("{#"):
            return ""
        tags.append(match.group(0))
        return f"<!--drip{len(tags) - 1}-->"

    return _JINJA.sub(hide_tag, _COMMENT.sub(hide_comment, flat)), tags, comments


def _locate(step: CompiledStep, context: Mapping[str, Any], error: Exception) -> TemplateError:
    """Explain a rendering failure with the file and line that caused it."""
    message = getattr(error, "message", None) or str(error) or type(error).__name__
    candidates = [
        (step.subject, f"<drip:{step.name}:subject>", step.subject_origins),
        (step.reference, f"<drip:{step.name}>", step.origins),
    ]
    if step.text_origins is not None:
        candidates.append((step.text, f"<drip:{step.name}:text>", step.text_origins))
    for template, label, origins in candidates:
        try:
            template.render(context)
        except Exception as exc:  # noqa: BLE001 - any failure, to find its line
            line = _template_line(exc, label)
            if line and line <= len(origins):
                path, at = origins[line - 1]
                return TemplateError(f"{path}, line {at}: {message}")
    files = ", ".join(str(f) for f in step.files if f.exists())
    return TemplateError(f"{files}: {message}")


def _template_line(error: BaseException, label: str) -> int | None:
    """Return the template line of the innermost frame of ``label`` in the traceback."""
    line = None
    tb = error.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == label:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line
