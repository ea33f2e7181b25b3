"""Engraving with LilyPond: score.musicxml becomes score.ly, score.pdf and preview.png.

Exports: EngraveResult, engrave, render_ly, check_ly_safety, escape_ly_string, run_sandboxed.

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
4. LilyPond runs in a fresh temporary directory, in its own process group, with a
   wall-clock timeout, rlimits (CPU seconds, address space, file size, no core
   dumps) and an environment holding only PATH, HOME (the temp dir) and LANG.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import re
import resource
import shutil
import signal
import subprocess
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from . import defaults
from .errors import EngraveError

log = logging.getLogger(__name__)

#: MusicXML elements whose text can come from users (file names, titles, options).
_FREE_TEXT_TAGS = {"part-name", "part-abbreviation", "instrument-name", "instrument-abbreviation", "group-name",
                   "group-abbreviation", "display-text", "accidental-text", "words", "rehearsal", "text",
                   "virtual-library", "virtual-name", "ensemble", "other-direction", "footnote", "level"}
#: MusicXML elements dropped entirely: we write the header ourselves.
_HEADER_TAGS = {"work", "movement-number", "movement-title", "identification", "credit"}
_TOKEN_RE = re.compile(r'"?Stemscribetext([a-j]+)Q"?')
_PAPER_SIZES = {"a4", "letter"}
#: Staff names longer than this are shortened with an ellipsis (they share the page's left indent).
_STAFF_NAME_CHARS = 28
#: Scheme procedures the .ly may call: musicxml2ly's layout and markup helpers, all pure.
_ALLOWED_CALLS = {"set-global-staff-size", "set-paper-size", "rgb-color", "cons", "make-dynamic-script",
                  "ly:make-moment", "ly:make-duration", "tuplet-number::fraction-with-notes",
                  "tuplet-number::non-default-fraction-with-notes", "tuplet-number::append-note-wrapper"}
#: Bare Scheme symbols the .ly may reference (directions, grob callbacks such as ly:slur::print).
_ALLOWED_SYMBOL_RE = re.compile(r"^(UP|DOWN|LEFT|RIGHT|CENTER|(ly:)?[a-z][a-z-]*::[a-z][a-z-]*)$")
_NUMBER_RE = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$|^[+-]?\d+/\d+$")
_DELIMITERS = set(" \t\r\n()\";")


@dataclass(frozen=True)
class EngraveResult:
    """Where engrave() wrote its files, how many pages the PDF has and how long it took."""

    ly_path: Path
    pdf_path: Path
    png_path: Path
    pages: int
    log_path: Path
    seconds: float


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
    body = _fix_drum_staves(_fix_chord_names(body))
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


class _SchemeReader:
    """Reads one Scheme datum at a time from LilyPond source, judging each as it goes."""

    def __init__(self, text: str, position: int) -> None:
        self.text, self.pos = text, position

    def fail(self, what: str) -> EngraveError:
        line = self.text.count("\n", 0, self.pos) + 1
        return EngraveError(f"refusing to run LilyPond: {what} at line {line} of the generated .ly")

    def skip_space(self) -> None:
        while self.pos < len(self.text):
            ch = self.text[self.pos]
            if ch == ";":
                end = self.text.find("\n", self.pos)
                self.pos = len(self.text) if end == -1 else end
            elif ch.isspace():
                self.pos += 1
            else:
                return

    def atom(self) -> str:
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] not in _DELIMITERS:
            self.pos += 1
        return self.text[start : self.pos]

    def string(self) -> None:
        end = self.pos + 1
        while end < len(self.text) and self.text[end] != '"':
            end += 2 if self.text[end] == "\\" else 1
        if end >= len(self.text):
            raise self.fail("unterminated Scheme string")
        self.pos = end + 1

    def datum(self, *, quoted: bool) -> None:
        """Read a datum; unless quoted (plain data), it must be a safe expression."""
        self.skip_space()
        if self.pos >= len(self.text):
            raise self.fail("Scheme expression cut off")
        ch = self.text[self.pos]
        if ch == '"':
            return self.string()
        if ch in "'`":
            if ch == "`" and not quoted:
                raise self.fail("Scheme quasi-quote")
            self.pos += 1
            return self.datum(quoted=True)
        if ch == "(":
            return self.list(quoted=quoted)
        if ch == "#":
            word = self.atom()
            if word in {"#t", "#f"} or (word.startswith("#:") and len(word) > 2):
                return None
            raise self.fail(f"Scheme syntax {word[:12]!r}")
        word = self.atom()
        if not word:
            raise self.fail(f"unexpected {ch!r} in Scheme")
        if quoted or _NUMBER_RE.match(word) or _ALLOWED_SYMBOL_RE.match(word):
            return None
        raise self.fail(f"Scheme reference to {word[:40]!r}")

    def list(self, *, quoted: bool) -> None:
        self.pos += 1
        self.skip_space()
        if not quoted:
            head = self.atom()
            if head not in _ALLOWED_CALLS:
                raise self.fail(f"Scheme call to {head[:40] or '(an expression)'!r}")
        while True:
            self.skip_space()
            if self.pos >= len(self.text):
                raise self.fail("unclosed Scheme list")
            if self.text[self.pos] == ")":
                self.pos += 1
                return None
            self.datum(quoted=quoted)


def check_ly_safety(ly_text: str) -> None:
    """Refuse LilyPond source that could run code or read files.

    Every Scheme expression (after ``#`` or ``$`` outside strings and comments) must
    be a literal, quoted data, an allowed symbol or a call from a short allow-list;
    ``\\include`` and embedded ``#{ ... #}`` music are refused.

    Raises:
        EngraveError: naming the first unsafe construct and its line.
    """
    i, n = 0, len(ly_text)
    while i < n:
        ch = ly_text[i]
        if ch == "%":
            if ly_text.startswith("%{", i):
                end = ly_text.find("%}", i + 2)
                i = n if end == -1 else end + 2
            else:
                end = ly_text.find("\n", i)
                i = n if end == -1 else end + 1
        elif ch == '"':
            reader = _SchemeReader(ly_text, i)
            reader.string()
            i = reader.pos
        elif ch == "\\" and re.match(r"\\(include|sourcefilename|sourcefileline|maininput)\b", ly_text[i:i + 20]):
            raise _SchemeReader(ly_text, i).fail("\\include or a source-file command")
        elif ch in "#$":
            if ly_text.startswith("{", i + 1):
                raise _SchemeReader(ly_text, i).fail("embedded LilyPond in Scheme")
            # '##t' is '#' followed by the Scheme datum '#t'; datum() reads that itself.
            reader = _SchemeReader(ly_text, i + 1)
            reader.datum(quoted=False)
            i = reader.pos
        else:
            i += 1


def _limits(cpu_s: int, memory_bytes: int, file_bytes: int):
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s))
        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_bytes, file_bytes))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    return apply


_BWRAP_WORKDIR = "/work"


def _bwrap_args(cwd: Path) -> list[str]:
    """bubblewrap arguments that confine a command to ``cwd``: read-only system, no network."""
    return [
        "bwrap", "--ro-bind", "/usr", "/usr", "--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64", "/lib64",
        "--symlink", "usr/bin", "/bin", "--ro-bind", "/etc", "/etc", "--proc", "/proc", "--dev", "/dev",
        "--tmpfs", "/tmp", "--bind", str(cwd), _BWRAP_WORKDIR, "--chdir", _BWRAP_WORKDIR,
        "--unshare-all", "--die-with-parent", "--new-session",
    ]


@functools.lru_cache(maxsize=1)
def bubblewrap_available() -> bool:
    """True when bubblewrap is installed and can create namespaces here (probed once).

    Containers without user namespaces refuse it; LilyPond then runs under the
    plain POSIX confinement only, which ``run_sandboxed`` always applies.
    """
    if shutil.which("bwrap") is None:
        return False
    with tempfile.TemporaryDirectory(prefix="stemscribe-bwrap-") as tmp:
        try:
            probe = subprocess.run(_bwrap_args(Path(tmp)) + ["/usr/bin/true"], capture_output=True, timeout=20)
        except (OSError, subprocess.TimeoutExpired):
            return False
    if probe.returncode != 0:
        log.warning("bubblewrap cannot run here (%s); LilyPond runs with rlimits only",
                    probe.stderr.decode("utf-8", "replace").strip()[:200])
    return probe.returncode == 0


def run_sandboxed(cmd: list[str], cwd: Path, *, timeout_s: float, memory_bytes: int,
                  file_bytes: int = 256 * 1024 ** 2) -> tuple[int, str]:
    """Run a helper (musicxml2ly, LilyPond) confined to its working directory.

    The process runs in ``cwd`` with HOME there, in a new session (process group),
    under rlimits, with an environment of PATH, HOME and LANG only. Where
    bubblewrap works, it also runs in fresh namespaces: no network, the system
    read-only, and ``cwd`` (seen as /work) the only writable place.

    Args:
        cmd: the command line.
        cwd: a fresh, private working directory.
        timeout_s: wall-clock limit; on expiry the whole process group is killed.
        memory_bytes: address-space limit per process.
        file_bytes: largest file a process may write.

    Returns:
        (exit status, combined stdout and stderr). A timeout gives status -9 and says so in the text.
    """
    env = {"PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"), "HOME": str(cwd), "LANG": "C.UTF-8"}
    if bubblewrap_available() and shutil.which(cmd[0], path="/usr/bin:/bin"):
        env = {"PATH": "/usr/bin:/bin", "HOME": _BWRAP_WORKDIR, "LANG": "C.UTF-8"}
        cmd = _bwrap_args(cwd) + cmd
    cpu_s = max(1, math.ceil(timeout_s) + 1)
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True,
                            preexec_fn=_limits(cpu_s, memory_bytes, file_bytes))
    try:
        output, _ = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        text = output.decode("utf-8", "replace")
        return -9, text + f"\n[stemscribe] killed after the {timeout_s:g} s time limit\n"
    return proc.returncode, output.decode("utf-8", "replace")


def _count_pages(pdf_path: Path) -> int:
    try:
        info = subprocess.run(["pdfinfo", str(pdf_path)], capture_output=True, text=True, timeout=30)
        match = re.search(r"^Pages:\s+(\d+)", info.stdout, re.MULTILINE)
        if match:
            return int(match.group(1))
    except (OSError, subprocess.TimeoutExpired):
        pass
    return len(re.findall(rb"/Type\s*/Page(?![a-z])", pdf_path.read_bytes()))


def _make_preview(pdf_path: Path, png_path: Path, *, dpi: int, work: Path, border_px: int = 24) -> None:
    """Render page 1 with pdftoppm and crop it to the music plus a small white border."""
    stem = work / "page"
    proc = subprocess.run(["pdftoppm", "-png", "-gray", "-r", str(dpi), "-f", "1", "-l", "1", "-singlefile",
                           str(pdf_path), str(stem)], capture_output=True, text=True, timeout=60)
    rendered = stem.with_suffix(".png")
    if proc.returncode != 0 or not rendered.exists():
        raise EngraveError(f"pdftoppm could not render the preview: {proc.stderr.strip()[:300]}")
    with Image.open(rendered) as page:
        gray = page.convert("L")
    ink = gray.point(lambda v: 255 if v < 200 else 0).getbbox()
    if ink:
        left, top, right, bottom = ink
        gray = gray.crop((max(0, left - border_px), max(0, top - border_px),
                          min(gray.width, right + border_px), min(gray.height, bottom + border_px)))
    gray.save(png_path, optimize=True)


def render_ly(ly_path: Path, out_dir: Path, *, timeout_s: float = defaults.LILYPOND_TIMEOUT_S,
              memory_bytes: int = defaults.LILYPOND_MEMORY_BYTES, preview_dpi: int = defaults.PREVIEW_DPI,
              log_prefix: str = "") -> EngraveResult:
    """Engrave a .ly file into out_dir (score.pdf, preview.png, lilypond.log); score.ly is copied too.

    Args:
        ly_path: LilyPond source; it must pass check_ly_safety().
        out_dir: where the outputs go (created if missing).
        timeout_s: wall-clock limit for LilyPond.
        memory_bytes: address-space limit for LilyPond.
        preview_dpi: resolution of preview.png (150 gives about 1100 px of music across).
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
        ly_out, pdf_out, png_out = out_dir / "score.ly", out_dir / "score.pdf", out_dir / "preview.png"
        if Path(ly_path).resolve() != ly_out.resolve():
            shutil.copyfile(ly_path, ly_out)
        shutil.copyfile(pdf, pdf_out)
        _make_preview(pdf_out, png_out, dpi=preview_dpi, work=work)
    return EngraveResult(ly_out, pdf_out, png_out, _count_pages(pdf_out), log_path, time.perf_counter() - started)


def engrave(musicxml_path: str | os.PathLike, out_dir: str | os.PathLike, *, title: str, composer: str | None = None,
            subtitle: str | None = None, paper: str = "a4", timeout_s: float = defaults.LILYPOND_TIMEOUT_S,
            memory_bytes: int = defaults.LILYPOND_MEMORY_BYTES, preview_dpi: int = defaults.PREVIEW_DPI) -> EngraveResult:
    """Engrave a MusicXML score: writes score.ly, score.pdf, preview.png and lilypond.log to out_dir.

    Args:
        musicxml_path: the score (score-partwise MusicXML, as the notation module writes it).
        out_dir: output folder (created if missing).
        title: shown at the top; user text, escaped.
        composer: shown top right when given; user text, escaped.
        subtitle: shown under the title when given; user text, escaped.
        paper: "a4" or "letter".
        timeout_s: wall-clock limit for conversion and for LilyPond, each.
        memory_bytes: address-space limit for both tools.
        preview_dpi: resolution of preview.png.

    Returns:
        EngraveResult with paths, page count and wall time.

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
                       log_prefix=convert_log)
    return EngraveResult(result.ly_path, result.pdf_path, result.png_path, result.pages, result.log_path,
                         time.perf_counter() - started)
