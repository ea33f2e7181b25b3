"""Engraving with LilyPond: score.musicxml becomes score.ly, score.pdf and preview pictures.

Exports: EngraveResult, engrave, render_ly, escape_ly_string; re-exports
preview_file_name and preview_page (core.contract, which owns the file names),
check_ly_safety (core.lysafety), run_sandboxed and bubblewrap_available (core.sandbox).

Each page up to defaults.MAX_PREVIEW_PAGES gets a preview picture cropped to its
music: preview.png for page 1 (the name scripts and bots rely on), then
preview-2.png, preview-3.png, ...; later pages are in the PDF only.

How user text is kept out of LilyPond's hands:

1. Before conversion every free-text field of the MusicXML (part names and
   abbreviations, instrument names, words, lyrics, rehearsal marks) is replaced by
   a plain letters-only token, and the header fields (work, identification,
   credits) are dropped. musicxml2ly never sees user text, so its own missing
   escaping cannot matter.
2. After conversion each token is replaced by a LilyPond string literal made by
   escape_ly_string(), and the header is written by us from the same escaper.
3. LilyPond 2.24 removed ``-dsafe`` (it refuses to start with it: "safe mode was
   removed ... use an external tool"). Instead check_ly_safety() reads every
   Scheme expression in the final .ly and refuses anything but an allow-list of
   harmless forms (literals, quoted data, grob callbacks, a few layout calls), and
   ``\\include``. A .ly calling ``#(system ...)`` never reaches LilyPond.
4. LilyPond runs through core.sandbox: a fresh temporary directory, its own process
   group, a wall-clock timeout, rlimits, an environment of PATH, HOME and LANG only,
   and, where bubblewrap works, no network and a read-only system.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, replace
from pathlib import Path

from PIL import Image

from . import defaults
from .contract import preview_file_name, preview_page
from .errors import EngraveError
from .lysafety import check_ly_safety
from .sandbox import bubblewrap_available, run_sandboxed

log = logging.getLogger(__name__)

#: MusicXML elements whose text can come from users (file names, titles, options).
_FREE_TEXT_TAGS = {"part-name", "part-abbreviation", "instrument-name", "instrument-abbreviation", "group-name",
                   "group-abbreviation", "display-text", "accidental-text", "words", "rehearsal", "text",
                   "virtual-library", "virtual-name", "ensemble", "other-direction", "footnote", "level"}
#: MusicXML elements dropped entirely: we write the header ourselves.
_HEADER_TAGS = {"work", "movement-number", "movement-title", "identification", "credit"}
_TOKEN_RE = re.compile(r'"?Stemscribetext([a-j]+)Q"?')
#: Preview file names: preview.png (page 1), preview-2.png, preview-3.png, ...
#: What pdftoppm names the pages it renders from the stem "page" (page-1.png, or page-01.png in long PDFs).
_RENDERED_RE = re.compile(r"page-([0-9]+)\.png")
_PAPER_SIZES = {"a4", "letter"}
#: Staff names longer than this are shortened with an ellipsis (they share the page's left indent).
_STAFF_NAME_CHARS = 28
#: Scheme procedures the .ly may call: musicxml2ly's layout and markup helpers, all pure.
#: Bare Scheme symbols the .ly may reference (directions, grob callbacks such as ly:slur::print).
@dataclass(frozen=True)
class EngraveResult:
    """Where engrave() wrote its files, how many pages the PDF has and how long it took.

    png_path is page 1's preview (preview.png); preview_paths lists every page's
    preview in page order, png_path first (at most defaults.MAX_PREVIEW_PAGES).
    """

    ly_path: Path
    pdf_path: Path
    png_path: Path
    pages: int
    log_path: Path
    seconds: float
    preview_paths: tuple[Path, ...] = ()


def escape_ly_string(text: str, *, max_chars: int = 200) -> str:
    """A LilyPond string literal (with quotes) that shows ``text`` literally.

    Backslashes and double quotes are escaped; control characters and line breaks
    become spaces; text longer than ``max_chars`` is cut and ends in an ellipsis. Inside a LilyPond string ``#``,
    ``$``, braces and ``\\markup`` are plain characters.
    """
    cleaned = "".join(" " if (ord(ch) < 32 or ord(ch) == 127) else ch for ch in text)
    cleaned = " ".join(cleaned.split())
    if len(cleaned) > max_chars:
        cleaned = cleaned[: max_chars - 1].rstrip() + "\u2026"
    return '"' + cleaned.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _token(index: int) -> str:
    return "Stemscribetext" + "".join("abcdefghij"[int(d)] for d in str(index)) + "Q"


def _prepare_musicxml(source: Path) -> tuple[bytes, list[str]]:
    """Strip the header from a MusicXML file and swap its free text for tokens.

    Returns the new XML and the texts, where texts[i] belongs to _token(i). Part and
    instrument ids are renumbered too, since musicxml2ly turns them into LilyPond names.
    """
    try:
        tree = ET.parse(source)
    except ET.ParseError as err:
        raise EngraveError(f"score MusicXML is not well-formed: {err}") from err
    root = tree.getroot()
    if root.tag != "score-partwise":
        raise EngraveError(f"expected score-partwise MusicXML, got <{root.tag}>")
    for tag in _HEADER_TAGS:
        for element in root.findall(tag):
            root.remove(element)
    texts: list[str] = []
    for element in root.iter():
        if element.tag in _FREE_TEXT_TAGS:
            texts.append((element.text or "").strip())
            element.text = _token(len(texts) - 1)
    for part in root.iter("part"):
        _mark_pickup(part)
    ids: dict[str, str] = {}
    for n, element in enumerate(root.iter("score-part"), start=1):
        ids[element.get("id", "")] = f"P{n}"
    for n, element in enumerate(root.iter("score-instrument"), start=1):
        ids[element.get("id", "")] = f"I{n}"
    for element in root.iter():
        if element.tag in {"score-part", "part", "score-instrument", "midi-instrument", "instrument"} and "id" in element.attrib:
            element.set("id", ids.get(element.get("id"), "X"))
    return ET.tostring(root, encoding="utf-8", xml_declaration=True), texts


def _mark_pickup(part: ET.Element) -> None:
    """Mark a short first measure implicit, which musicxml2ly needs to write ``\\partial``
    (music21 writes implicit="no" on every measure, so pickups came out padded with a rest)."""
    first = part.find("measure")
    if first is None:
        return
    divisions = first.findtext("attributes/divisions")
    beats, beat_type = first.findtext("attributes/time/beats"), first.findtext("attributes/time/beat-type")
    if not (divisions and beats and beat_type) or not beats.isdigit() or not beat_type.isdigit():
        return  # compound beats like "3+2" are never pickups we produce
    position = longest = 0.0
    for child in first:
        if child.tag == "note" and child.find("chord") is None and child.find("grace") is None:
            position += float(child.findtext("duration") or 0)
        elif child.tag == "forward":
            position += float(child.findtext("duration") or 0)
        elif child.tag == "backup":
            position -= float(child.findtext("duration") or 0)
        longest = max(longest, position)
    bar_length = float(divisions) * 4 * int(beats) / int(beat_type)
    if 0 < longest < bar_length:
        first.set("implicit", "yes")


def _strip_block(text: str, keyword: str) -> str:
    """Remove every ``keyword { ... }`` block (brace-matched, strings respected)."""
    while (start := text.find(keyword)) != -1:
        brace = text.find("{", start)
        depth, i, in_string = 0, brace, False
        while i < len(text):
            ch = text[i]
            if in_string:
                if ch == "\\":
                    i += 1
                elif ch == '"':
                    in_string = False
            elif ch == '"':
                in_string = True
            elif ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
                if depth == 0:
                    break
            i += 1
        text = text[:start] + text[i + 1 :]
    return text


def _fix_chord_names(ly: str) -> str:
    """musicxml2ly writes a plain triad as ``g:5``, which LilyPond names "G5" (a power chord)."""
    def fix(block: re.Match) -> str:
        return re.sub(r":(m|aug|dim)?5(?![\d.+-])", lambda m: f":{m.group(1)}" if m.group(1) else "", block.group(0))

    return re.sub(r"\\chordmode\s*\{[^}]*\}", fix, ly)


def _fix_drum_staves(ly: str) -> str:
    """musicxml2ly puts unpitched notes, written as pitches, into a DrumStaff, which stacks them
    all on the middle line. A plain Staff with the percussion clef shows them where MusicXML
    placed them (kick in the bottom space, snare on the third space, hi-hat above)."""
    return (ly.replace("\\new DrumStaff", "\\new Staff").replace("DrumStaff.", "Staff.")
            .replace("\\context DrumStaff", "\\context Staff").replace("\\context DrumVoice", "\\context Voice"))


# musicxml2ly wraps long lines, also inside a tuning's Scheme: any whitespace may separate its parts.
_LY_PITCH_RE = re.compile(r"\(ly:make-pitch\s+(-?\d+)\s+(\d)\s+(-?\d+(?:/\d+)?)\)")
_TAB_TUNING_RE = re.compile(r"stringTunings\s*=\s*#`\(((?:\s*,\(ly:make-pitch[-0-9/\s]+\))+)\s*\)")
_CHORD_STRINGS_RE = re.compile(r"<([^<>]+)>(\d+\.*(?:\*\d+(?:/\d+)?)?)((?:\s*(?:~|\[|\]|\\[1-9]))*)")


def _ly_pitch_name(octave: int, step: int, alteration: str) -> str:
    """An absolute LilyPond note name of (ly:make-pitch octave step alteration): (0 0 0) is c'.

    musicxml2ly 2.24 writes a string tuning's MusicXML <tuning-alter> (semitones) as a whole
    number where LilyPond counts whole tones (F sharp comes out as (ly:make-pitch -2 3 1));
    a whole number is read as semitones here, a fraction as LilyPond's own unit.
    """
    num, _, den = alteration.partition("/")
    alter = int(num) / int(den) if den else int(num) / 2
    name = "cdefgab"[step] + {0.5: "is", -0.5: "es", 1.0: "isis", -1.0: "eses"}.get(alter, "")
    name = {"ees": "es", "aes": "as"}.get(name, name)
    return name + ("'" * (octave + 1) if octave >= 0 else "," * (-octave - 1))


def _fix_tab_staves(ly: str) -> str:
    """Make musicxml2ly's TabStaff engrave as written.

    Its string tunings are a Scheme quasi-quote, which check_ly_safety refuses; the same
    tuning as ``\\stringTuning <...>`` is plain LilyPond. It writes a chord's string
    numbers after the chord (``<c e g>2 \\5 \\4 \\3``), where a TabStaff ignores them;
    inside the chord (``<c\\5 e\\4 g\\3>2``) each note keeps its string.
    """
    def tuning(match: re.Match) -> str:
        pitches = [_ly_pitch_name(int(o), int(s), a) for o, s, a in _LY_PITCH_RE.findall(match.group(1))]
        return "stringTunings = \\stringTuning <" + " ".join(reversed(pitches)) + ">"

    def chord(match: re.Match) -> str:
        numbers = re.findall(r"\\[1-9]", match.group(3))
        notes = match.group(1).split()
        if not numbers or len(numbers) != len(notes):
            return match.group(0)
        rest = re.sub(r"\s*\\[1-9]", "", match.group(3))
        return "<" + " ".join(n + s for n, s in zip(notes, numbers)) + ">" + match.group(2) + rest

    ly = _TAB_TUNING_RE.sub(tuning, ly)
    return _CHORD_STRINGS_RE.sub(chord, ly)


def _name_indent_mm(names: list[str], *, minimum_mm: float) -> float:
    """Left indent wide enough for the longest staff name (about 2 mm per character)."""
    longest = min(_STAFF_NAME_CHARS, max((len(" ".join(n.split())) for n in names), default=0))
    return round(min(60.0, max(minimum_mm, 2.0 * longest + 3.0)), 1)


def _postprocess_ly(raw: str, texts: list[str], *, title: str, composer: str | None, subtitle: str | None,
                    paper: str) -> str:
    """Turn musicxml2ly's output into our score.ly: our header and paper, user text escaped."""
    body = _strip_block(_strip_block(raw, "\\header"), "\\paper")
    body = re.sub(r"#\(set-global-staff-size [0-9.]+\)\s*", "", body)
    body = re.sub(r'^\\version "[^"]*"\s*', "", body)
    body = _fix_tab_staves(_fix_drum_staves(_fix_chord_names(body)))
    long_names = [texts[int("".join(str("abcdefghij".index(c)) for c in m.group(1)))]
                  for m in re.finditer(r'instrumentName = "Stemscribetext([a-j]+)Q"', body)]
    short_names = [texts[int("".join(str("abcdefghij".index(c)) for c in m.group(1)))]
                   for m in re.finditer(r'shortInstrumentName = "Stemscribetext([a-j]+)Q"', body)]

    def untoken(m: re.Match) -> str:
        index = int("".join(str("abcdefghij".index(c)) for c in m.group(1)))
        return escape_ly_string(texts[index], max_chars=_STAFF_NAME_CHARS) if index < len(texts) else '""'

    body = _TOKEN_RE.sub(untoken, body)
    header = [f"  title = {escape_ly_string(title)}"]
    if subtitle:
        header.append(f"  subtitle = {escape_ly_string(subtitle)}")
    if composer:
        header.append(f"  composer = {escape_ly_string(composer)}")
    header += ['  subsubtitle = \\markup \\fontsize #-2 \\italic "transcribed by stemscribe"', "  tagline = ##f"]
    preamble = [
        '\\version "2.24.0"',
        "#(set-global-staff-size 19)",
        "\\paper {",
        f'  #(set-paper-size "{paper}")',
        f"  indent = {_name_indent_mm(long_names, minimum_mm=12.0)}\\mm",
        f"  short-indent = {_name_indent_mm(short_names, minimum_mm=4.0)}\\mm",
        "  ragged-last-bottom = ##t",
        "  print-page-number = ##t",
        "}",
        "\\header {", *header, "}",
    ]
    return "\n".join(preamble) + "\n" + body.lstrip()


def _count_pages(pdf_path: Path) -> int:
    try:
        info = subprocess.run(["pdfinfo", str(pdf_path)], capture_output=True, text=True, timeout=30)
        match = re.search(r"^Pages:\s+(\d+)", info.stdout, re.MULTILINE)
        if match:
            return int(match.group(1))
    except (OSError, subprocess.TimeoutExpired):
        pass
    return len(re.findall(rb"/Type\s*/Page(?![a-z])", pdf_path.read_bytes()))


def _make_previews(pdf_path: Path, out_dir: Path, *, last_page: int, dpi: int, work: Path) -> list[Path]:
    """Render pages 1..last_page (or up to the PDF's end) with one pdftoppm call and crop each to its music.

    Returns:
        The preview files written to out_dir, in page order (preview.png first).

    Raises:
        EngraveError: pdftoppm failed, timed out or skipped a page.
    """
    stem = work / "page"
    try:
        proc = subprocess.run(["pdftoppm", "-png", "-gray", "-r", str(dpi), "-f", "1", "-l", str(last_page),
                               str(pdf_path), str(stem)], capture_output=True, text=True,
                              timeout=defaults.PREVIEW_TIMEOUT_S)
    except subprocess.TimeoutExpired as err:
        raise EngraveError(f"pdftoppm took over {defaults.PREVIEW_TIMEOUT_S:.0f} s to render the previews") from err
    rendered = {}
    for path in work.iterdir():
        match = _RENDERED_RE.fullmatch(path.name)
        if match:
            rendered[int(match.group(1))] = path
    # pdftoppm stops at the PDF's last page, so a page count that was overestimated renders fewer.
    if proc.returncode != 0 or not rendered or sorted(rendered) != list(range(1, len(rendered) + 1)):
        raise EngraveError(f"pdftoppm could not render the previews: {proc.stderr.strip()[:300]}")
    _remove_stale_previews(out_dir, keep_pages=len(rendered))
    previews = []
    for page in range(1, len(rendered) + 1):
        target = out_dir / preview_file_name(page)
        _crop_to_ink(rendered[page], target)
        previews.append(target)
    return previews


def _remove_stale_previews(out_dir: Path, *, keep_pages: int) -> None:
    """Delete previews of pages past keep_pages, left by an earlier, longer engraving into the same folder."""
    for path in out_dir.glob("preview-*.png"):
        page = preview_page(path.name)
        if page is not None and page > keep_pages:
            path.unlink()


def _crop_to_ink(rendered: Path, target: Path, *, border_px: int = 24) -> None:
    """Save a rendered page cropped to its music plus a small white border."""
    with Image.open(rendered) as page:
        gray = page.convert("L")
    ink = gray.point(lambda v: 255 if v < 200 else 0).getbbox()
    if ink:
        left, top, right, bottom = ink
        gray = gray.crop((max(0, left - border_px), max(0, top - border_px),
                          min(gray.width, right + border_px), min(gray.height, bottom + border_px)))
    gray.save(target, optimize=True)


def render_ly(ly_path: Path, out_dir: Path, *, timeout_s: float = defaults.LILYPOND_TIMEOUT_S,
              memory_bytes: int = defaults.LILYPOND_MEMORY_BYTES, preview_dpi: int = defaults.PREVIEW_DPI,
              max_preview_pages: int = defaults.MAX_PREVIEW_PAGES, log_prefix: str = "") -> EngraveResult:
    """Engrave a .ly file into out_dir (score.pdf, preview pictures, lilypond.log); score.ly is copied too.

    Args:
        ly_path: LilyPond source; it must pass check_ly_safety().
        out_dir: where the outputs go (created if missing).
        timeout_s: wall-clock limit for LilyPond.
        memory_bytes: address-space limit for LilyPond.
        preview_dpi: resolution of the previews (150 gives about 1100 px of music across).
        max_preview_pages: previews are made for the first this many pages (at least page 1).
        log_prefix: text put at the top of lilypond.log (the conversion log).

    Returns:
        EngraveResult.

    Raises:
        EngraveError: unsafe source, LilyPond failed or timed out, or produced no PDF; the log is kept.
    """
    started = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    log_path = out_dir / "lilypond.log"
    source = Path(ly_path).read_text(encoding="utf-8")
    try:
        check_ly_safety(source)
    except EngraveError as err:
        log_path.write_text(log_prefix + err.message + "\n", encoding="utf-8")
        err.log_path = str(log_path)
        raise
    with tempfile.TemporaryDirectory(prefix="stemscribe-ly-") as tmp:
        work = Path(tmp)
        (work / "score.ly").write_text(source, encoding="utf-8")
        status, output = run_sandboxed(["lilypond", "-dno-point-and-click", "-ddelete-intermediate-files",
                                        "--pdf", "-o", "score", "score.ly"],
                                       work, timeout_s=timeout_s, memory_bytes=memory_bytes)
        log_path.write_text(log_prefix + output, encoding="utf-8")
        pdf = work / "score.pdf"
        if status != 0 or not pdf.exists():
            why = "timed out" if status == -9 else f"failed (exit {status})"
            last = [line for line in output.splitlines() if "error" in line.lower()][-1:] or output.splitlines()[-1:]
            raise EngraveError(f"LilyPond {why}: {' '.join(last)[:300]}", log_path=str(log_path))
        ly_out, pdf_out = out_dir / "score.ly", out_dir / "score.pdf"
        if Path(ly_path).resolve() != ly_out.resolve():
            shutil.copyfile(ly_path, ly_out)
        shutil.copyfile(pdf, pdf_out)
        pages = _count_pages(pdf_out)
        previews = _make_previews(pdf_out, out_dir, last_page=max(1, min(pages, max_preview_pages)),
                                  dpi=preview_dpi, work=work)
    return EngraveResult(ly_out, pdf_out, previews[0], pages, log_path, time.perf_counter() - started,
                         tuple(previews))


def engrave(musicxml_path: str | os.PathLike, out_dir: str | os.PathLike, *, title: str, composer: str | None = None,
            subtitle: str | None = None, paper: str = "a4", timeout_s: float = defaults.LILYPOND_TIMEOUT_S,
            memory_bytes: int = defaults.LILYPOND_MEMORY_BYTES, preview_dpi: int = defaults.PREVIEW_DPI,
            max_preview_pages: int = defaults.MAX_PREVIEW_PAGES) -> EngraveResult:
    """Engrave a MusicXML score: writes score.ly, score.pdf, the previews and lilypond.log to out_dir.

    Args:
        musicxml_path: the score (score-partwise MusicXML, as the notation module writes it).
        out_dir: output folder (created if missing).
        title: shown at the top; user text, escaped.
        composer: shown top right when given; user text, escaped.
        subtitle: shown under the title when given; user text, escaped.
        paper: "a4" or "letter".
        timeout_s: wall-clock limit for conversion and for LilyPond, each.
        memory_bytes: address-space limit for both tools.
        preview_dpi: resolution of the previews.
        max_preview_pages: previews are made for the first this many pages (preview.png, preview-2.png, ...).

    Returns:
        EngraveResult with paths (previews in page order), page count and wall time.

    Raises:
        ValueError: unknown paper size (caller bug).
        EngraveError: conversion or LilyPond failed; lilypond.log in out_dir keeps both logs.
    """
    if paper not in _PAPER_SIZES:
        raise ValueError(f"paper must be one of {sorted(_PAPER_SIZES)}, got {paper!r}")
    started = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    log_path = out_dir / "lilypond.log"
    xml, texts = _prepare_musicxml(Path(musicxml_path))
    with tempfile.TemporaryDirectory(prefix="stemscribe-xml-") as tmp:
        work = Path(tmp)
        (work / "score.musicxml").write_bytes(xml)
        status, convert_log = run_sandboxed(["musicxml2ly", "--no-page-layout", "-o", "raw.ly", "score.musicxml"],
                                            work, timeout_s=timeout_s, memory_bytes=memory_bytes)
        convert_log = f"== musicxml2ly (exit {status})\n{convert_log}\n== lilypond\n"
        raw = work / "raw.ly"
        if status != 0 or not raw.exists():
            log_path.write_text(convert_log, encoding="utf-8")
            raise EngraveError(f"musicxml2ly failed (exit {status}) on our MusicXML", log_path=str(log_path))
        ly_text = _postprocess_ly(raw.read_text(encoding="utf-8"), texts, title=title, composer=composer,
                                  subtitle=subtitle, paper=paper)
    ly_path = out_dir / "score.ly"
    ly_path.write_text(ly_text, encoding="utf-8")
    result = render_ly(ly_path, out_dir, timeout_s=timeout_s, memory_bytes=memory_bytes, preview_dpi=preview_dpi,
                       max_preview_pages=max_preview_pages, log_prefix=convert_log)
    return replace(result, seconds=time.perf_counter() - started)

__all__ = ["EngraveResult", "bubblewrap_available", "check_ly_safety", "engrave", "escape_ly_string",
           "preview_file_name", "preview_page", "render_ly", "run_sandboxed"]
