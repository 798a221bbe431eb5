"""Cutting a tenant's document into retrievable chunks.

Pure Python: the API chunks a document when it is uploaded (to refuse a useless one early), the
worker when it indexes it.

Sizes, in Latin-equivalent characters (``text_size``: a Chinese character counts as 3):

- **Why short.** A chunk is the unit the router retrieves and quotes. One embedding of a long
  chunk averages several topics and matches none of them well; extractive answers are at most
  ~420 characters, so a chunk should hold about one answer. Hence a target of 500 and a hard
  maximum of 900: a chunk is one to three paragraphs, an FAQ answer or a procedure.
- **Why the Chinese weight.** The same support paragraph measured 192 characters in English and
  53 in Chinese (3.6x), and over the 40 passages of ``bench/data/retrieval_set.yaml``
  multilingual-e5 reads 4.0 English characters but 1.3 Chinese characters per token (3.0x).
  Counting a Chinese character as 3 Latin ones gives chunks that carry about the same content,
  and the same number of tokens, in both languages.
- **Why it fits the model.** 900 Latin-equivalent characters are about 210-260 e5 tokens in
  either language, well inside e5-small's 512-token window (the "passage: " prefix and the
  heading the router may prepend included), so nothing is silently truncated.

Structure is kept: the document is split at Markdown headings (``#`` to ``######``) into
sections whose ``heading`` is the path "Title > Section > Subsection"; within a section,
blank-line paragraphs are packed up to the target, a paragraph longer than the maximum is split
at sentence ends, and a sentence longer than the maximum at spaces or commas. A small remainder
is merged into the chunk before it rather than left as a fragment that retrieves badly. Fenced
code blocks are not searched for headings or blank lines.

Plain text has headings too, only unmarked: a business that pastes its policies from a word
processor sends "Late check-out" on a line of its own above the paragraph it names. Without its
sections, a document is one section: its chunks pack unrelated paragraphs together and an
extractive answer picks sentences from all over it (the shop example as plain text scored 74.5 %
instead of 88.2 % as Markdown; 85.3 % with its headings recognised, README). So a text without a
single Markdown heading gets its headings recognised (``_plain_headings``): a paragraph of one
short line, followed by more text, that does not read like a sentence or a fact (no closing
punctuation but a question mark, no label with its value, no time, amount or long number, not a
list item), and is followed by text rather than by another heading. In a text with Markdown
headings, only a line in bold alone is taken so. Setext headings (a line underlined with ``===``
or ``---``) are Markdown headings and are read as such.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from shared.knowledge.text import split_sentences

MAX_DOCUMENT_CHARS = 200_000
"""The largest document accepted (characters); the API refuses bigger ones."""

CJK_CHAR_WEIGHT = 3.0
"""How many Latin characters one Chinese character is worth in ``text_size``."""
TARGET_CHUNK_SIZE = 500
"""Paragraphs are packed into one chunk while it stays within this size."""
MAX_CHUNK_SIZE = 900
"""No chunk is larger, unless a single word is (it is then cut)."""
MIN_CHUNK_SIZE = 120
"""A remainder smaller than this joins the previous chunk of its section if that still fits."""

_CJK = re.compile("[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3000-\u303f\uff00-\uffef]")
_HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$")
_SETEXT_UNDERLINE = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
# a line wholly in bold or italics: "**Late check-out**" (not "**a** and **b**", "* a *")
_EMPHASIS = re.compile(r"^(\*\*|__|\*|_)(?![\s*_])((?:(?!\1).)+?)(?<![\s*_])\1$")
# a time, an amount, a share or a long number: what a fact quotes and a heading rarely does
_FACT = re.compile(r"\d\s*[:：.,]\s*\d|[$¥€£%％元]|\d{3,}|\d\s*(?:am|pm)\b", re.IGNORECASE)
# "Check-in: from 3 pm", "地址：北京市朝阳区": a label and its value state a fact
_LABELLED = re.compile(r"[:：]\s*\S")
_LIST_ITEM = re.compile(r"^\s*(?:[-*+•·]|\d+[.)、])\s")
# what ends a sentence, a clause or a label ("Fees:") in English and Chinese
# (a question is a heading: an FAQ page's question names the answer under it)
_CLOSING_PUNCTUATION = tuple(".!,;:…。！，；：、\"'”’")
BOM = "\ufeff"  # what some editors put before a UTF-8 text; not part of its first line
PLAIN_HEADING_MAX_SIZE = 60
"""The longest line read as a plain-text heading (Latin-equivalent characters: 20 Chinese)."""
_FENCE = re.compile(r"^ {0,3}(```|~~~)")
_SOFT_BREAK = re.compile(r"(?<=[\s,，、;；:：])")


@dataclass(frozen=True)
class Chunk:
    position: int
    """0-based order of the chunk in its document."""
    heading: str
    """Heading path, "Title > Section > Subsection"; the title alone before any heading."""
    text: str


def text_size(text: str) -> float:
    """Length in Latin-equivalent characters: a Chinese character (or CJK punctuation) counts
    ``CJK_CHAR_WEIGHT``, anything else 1."""
    cjk = len(_CJK.findall(text))
    return len(text) - cjk + CJK_CHAR_WEIGHT * cjk


def chunk_document(title: str, text: str) -> list[Chunk]:
    """Chunks of a Markdown or plain-text document, in order; [] for a blank text."""
    if len(text.removeprefix(BOM)) > MAX_DOCUMENT_CHARS:
        raise ValueError(f"document has {len(text)} characters, more than {MAX_DOCUMENT_CHARS}")
    chunks: list[Chunk] = []
    for heading, paragraphs in _sections(title.strip(), _headings_marked(text)):
        for body in _pack(paragraphs):
            chunks.append(Chunk(position=len(chunks), heading=heading, text=body))
    return chunks


def _sections(title: str, text: str) -> list[tuple[str, list[str]]]:
    """(heading path, paragraphs) for every section that has text."""
    sections: list[tuple[str, list[str]]] = []
    path: list[tuple[int, str]] = []  # (level, heading) of the open headings
    paragraphs: list[str] = []
    lines: list[str] = []
    seen_heading = False

    def end_paragraph() -> None:
        if any(line.strip() for line in lines):
            paragraphs.append("\n".join(lines).strip("\n"))
        lines.clear()

    def end_section() -> None:
        end_paragraph()
        if paragraphs:
            names = [title] if title else []
            names += [name for _, name in path]
            sections.append((" > ".join(names), paragraphs.copy()))
        paragraphs.clear()

    all_lines = text.splitlines()
    for line, in_fence in zip(all_lines, _in_fence(all_lines), strict=True):
        heading = None if in_fence else _HEADING.match(line)
        if heading:
            end_section()
            level, name = len(heading.group(1)), heading.group(2).strip()
            first = not seen_heading
            seen_heading = True
            while path and path[-1][0] >= level:
                path.pop()
            if first and name.casefold() == title.casefold():
                continue  # the document restates its title: it is the root already
            if name:
                path.append((level, name))
        elif not line.strip() and not in_fence:
            end_paragraph()
        else:
            lines.append(line.rstrip())
    end_section()
    return sections


def first_heading(text: str) -> str | None:
    """The document's first heading, Markdown or plain text, as the chunker reads it."""
    lines = _headings_marked(text).splitlines()
    for line, in_fence in zip(lines, _in_fence(lines), strict=True):
        heading = None if in_fence else _HEADING.match(line)
        if heading and heading.group(2).strip():
            return str(heading.group(2).strip())
    return None


def _headings_marked(text: str) -> str:
    """The text as the chunker reads it: without a byte order mark, its setext and unmarked
    headings written as Markdown headings."""
    return _plain_headings(_setext_headings(text.removeprefix(BOM)))


def _in_fence(lines: list[str]) -> list[bool]:
    """For each line, whether it is inside a fenced code block (its opening fence included)."""
    inside: list[bool] = []
    in_fence = False
    for line in lines:
        if _FENCE.match(line):
            in_fence = not in_fence
        inside.append(in_fence)
    return inside


def _setext_headings(text: str) -> str:
    """``Title`` over a line of ``===`` (or ``---``) written as ``# Title`` (or ``## Title``):
    the underline must follow a paragraph's only line, else ``---`` is a thematic break."""
    lines = text.splitlines()
    out: list[str] = []
    for index, (line, in_fence) in enumerate(zip(lines, _in_fence(lines), strict=True)):
        underline = None if in_fence else _SETEXT_UNDERLINE.match(line)
        above = out[-1] if out else ""
        starts_paragraph = index < 2 or not lines[index - 2].strip()
        if (
            underline
            and above.strip()
            and starts_paragraph
            and not _HEADING.match(above)
            and not _LIST_ITEM.match(above)
        ):
            level = "#" if underline.group(1)[0] == "=" else "##"
            out[-1] = f"{level} {above.strip()}"
            continue
        out.append(line)
    return "\n".join(out)


def _plain_headings(text: str) -> str:
    """The text with its unmarked headings marked as Markdown. In a text without Markdown
    headings: its sections' (``##``), and above them the document's own (``#``) when the text
    opens with two headings. In a text with some, its author marked the headings they meant,
    but a line in bold alone ("**Late check-out**") is still a heading, one level below the
    Markdown heading it falls under: writers use bold for the sections of a section."""
    lines = text.splitlines()
    # (start, end) line ranges of the blank-line paragraphs, code fences kept whole, and the
    # level of the Markdown heading each one falls under (0: none yet)
    blocks: list[tuple[int, int, int]] = []
    start: int | None = None
    level = 0
    marked_up = False
    for index, (line, in_fence) in enumerate(zip(lines, _in_fence(lines), strict=True)):
        heading = None if in_fence else _HEADING.match(line)
        if heading:
            level = len(heading.group(1))
            marked_up = True
        if line.strip() or in_fence:
            start = index if start is None else start
        elif start is not None:
            blocks.append((start, index, level))
            start = None
    if start is not None:
        blocks.append((start, len(lines), level))
    candidates: dict[int, tuple[str, int]] = {}  # block number → (heading, level under)
    markdown: set[int] = set()  # the blocks that open with a Markdown heading
    for number, (first, end, under) in enumerate(blocks):
        line = lines[first].strip()
        if _HEADING.match(line):
            markdown.add(number)
            continue
        emphasis = _EMPHASIS.match(line)
        bold = emphasis is not None and emphasis.group(1) in ("**", "__")
        name = emphasis.group(2) if emphasis else line
        # a bold line before any Markdown heading is no section of one
        marked_as_section = bold and under > 0 if marked_up else True
        if end - first == 1 and marked_as_section and _reads_like_heading(name):
            candidates[number] = (name, under)
    # a heading names the text after it: one followed by another heading (or by nothing) is
    # text ("Closed on Sundays" over "Parking available" over a paragraph), except a plain
    # text's opening line over its first section's heading, the document's own heading
    headings = {
        number: candidate
        for number, candidate in candidates.items()
        if number + 1 < len(blocks)
        and (
            (number + 1 not in candidates and number + 1 not in markdown)
            or (number == 0 and not marked_up and number + 2 < len(blocks))
        )
    }
    marked = list(lines)
    for number, (name, under) in headings.items():
        # without Markdown headings, the first line is the document's own heading when a
        # section heading follows it
        opening = number == 0 and 1 in headings
        depth = min(under + 1, 6) if marked_up else 1 if opening else 2
        marked[blocks[number][0]] = f"{'#' * depth} {name}"
    return "\n".join(marked)


def _reads_like_heading(line: str) -> bool:
    name = line.strip()
    return (
        len(name) >= 2
        and text_size(name) <= PLAIN_HEADING_MAX_SIZE
        and not name.endswith(_CLOSING_PUNCTUATION)
        and not _FACT.search(name)  # "Open daily 9:00-21:00" states a fact, "7-day returns" not
        and not _LABELLED.search(name)
        and any(char.isalpha() for char in name)  # not a rule line ("==========")
        and not _LIST_ITEM.match(name)
        and not name[0].islower()
        and not _FENCE.match(name)
        and "@" not in name
        and "://" not in name
        and not any(markup in name for markup in ("**", "__", "`", "]("))  # inline Markdown
    )


def _pack(paragraphs: list[str]) -> list[str]:
    """Consecutive paragraphs packed into bodies of at most the target size (a paragraph alone
    may reach the maximum), oversized paragraphs split, a small remainder merged back."""
    pieces: list[str] = []
    for paragraph in paragraphs:
        if text_size(paragraph) <= MAX_CHUNK_SIZE:
            pieces.append(paragraph)
        else:
            pieces += _split_paragraph(paragraph)
    bodies: list[str] = []
    current: list[str] = []
    for piece in pieces:
        if current and text_size("\n\n".join([*current, piece])) > TARGET_CHUNK_SIZE:
            bodies.append("\n\n".join(current))
            current = []
        current.append(piece)
    if current:
        bodies.append("\n\n".join(current))
    if len(bodies) > 1 and text_size(bodies[-1]) < MIN_CHUNK_SIZE:
        merged = bodies[-2] + "\n\n" + bodies[-1]
        if text_size(merged) <= MAX_CHUNK_SIZE:
            bodies[-2:] = [merged]
    return bodies


def _split_paragraph(paragraph: str) -> list[str]:
    """An oversized paragraph as pieces of at most the target size, cut at sentence ends (a
    sentence or list item keeps its line), sentences too long cut at spaces or commas."""
    pieces: list[str] = []
    current = ""
    for line in paragraph.splitlines():
        for index, sentence in enumerate(split_sentences(line)):
            for part in _split_sentence(sentence):
                joiner = _joiner(current, part, new_line=index == 0)
                if current and text_size(current + joiner + part) > TARGET_CHUNK_SIZE:
                    pieces.append(current)
                    current = part
                else:
                    current = current + joiner + part if current else part
    if current:
        pieces.append(current)
    return pieces


def _joiner(left: str, right: str, *, new_line: bool) -> str:
    if new_line:
        return "\n"
    if left and (_CJK.match(left[-1]) or _CJK.match(right[0])):
        return ""
    return " "


def _split_sentence(sentence: str) -> list[str]:
    """A sentence longer than the maximum cut into parts of at most the target size, at spaces
    or commas when there are any, else anywhere."""
    if text_size(sentence) <= MAX_CHUNK_SIZE:
        return [sentence]
    parts: list[str] = []
    current = ""
    for word in _SOFT_BREAK.split(sentence):
        while text_size(word) > TARGET_CHUNK_SIZE:  # no break at all: cut by size
            cut = _longest_prefix(word, TARGET_CHUNK_SIZE)
            if current:
                parts.append(current)
                current = ""
            parts.append(word[:cut])
            word = word[cut:]
        if current and text_size(current + word) > TARGET_CHUNK_SIZE:
            parts.append(current)
            current = ""
        current += word
    if current:
        parts.append(current)
    return [part.strip() for part in parts if part.strip()]


def _longest_prefix(text: str, size: float) -> int:
    """Length of the longest prefix of ``text`` within ``size`` (at least one character)."""
    total = 0.0
    for index, char in enumerate(text):
        total += CJK_CHAR_WEIGHT if _CJK.match(char) else 1.0
        if total > size:
            return max(index, 1)
    return len(text)
