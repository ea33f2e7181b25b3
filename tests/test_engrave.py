"""Tests of core.engrave with the real musicxml2ly and LilyPond: outputs, a preview per page,
notation coverage, escaping of user text, the Scheme guard that replaces LilyPond's removed
-dsafe, the sandbox."""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from pathlib import Path

import pytest
from PIL import Image

from stemscribe.core.engrave import (
    bubblewrap_available,
    check_ly_safety,
    engrave,
    escape_ly_string,
    preview_file_name,
    preview_page,
    render_ly,
    run_sandboxed,
)
from stemscribe.core.errors import EngraveError
from tests.helpers.scores import ensemble_score, grand_staff_score, long_piano_score, write_musicxml

#: A4 at the preview resolution (150 dpi), in pixels: an uncropped page would be this big.
A4_PAGE_PX = (1240, 1754)


def pdf_text(pdf: Path) -> str:
    return " ".join(subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True, check=True).stdout.split())


@pytest.fixture(scope="module")
def grand(tmp_path_factory):
    d = tmp_path_factory.mktemp("grand")
    xml = write_musicxml(grand_staff_score(), d / "score.musicxml")
    return engrave(xml, d / "out", title="Etude in G", composer="A. Player")


def test_engrave_writes_pdf_png_ly_and_log(grand):
    for path in (grand.ly_path, grand.pdf_path, grand.png_path, grand.log_path):
        assert path.exists() and path.stat().st_size > 0
    assert [p.name for p in (grand.ly_path, grand.pdf_path, grand.png_path)] == ["score.ly", "score.pdf", "preview.png"]
    assert grand.pages == 1
    with Image.open(grand.png_path) as png:
        # Cropped to the music, phone-readable width; a 5-bar score is one short system.
        assert 1000 <= png.width <= 1400
        assert 150 <= png.height < png.width
        corner = png.convert("L").getpixel((2, 2))
    assert corner > 240  # a white border is kept around the music
    text = pdf_text(grand.pdf_path)
    assert "Etude in G" in text and "A. Player" in text and "transcribed by stemscribe" in text
    assert "Music engraving by LilyPond" not in text  # tagline off
    assert grand.seconds > 0


def test_a_one_page_score_has_only_preview_png(grand):
    assert grand.preview_paths == (grand.png_path,)
    assert sorted(p.name for p in grand.png_path.parent.glob("preview*")) == ["preview.png"]


@pytest.fixture(scope="module")
def long_score(tmp_path_factory):
    """105 bars of two-hand piano: three A4 pages."""
    d = tmp_path_factory.mktemp("long")
    xml = write_musicxml(long_piano_score(bars=105), d / "score.musicxml")
    return engrave(xml, d / "out", title="Long study")


def test_every_page_gets_a_cropped_preview_in_page_order(long_score):
    assert long_score.pages == 3
    assert [p.name for p in long_score.preview_paths] == ["preview.png", "preview-2.png", "preview-3.png"]
    assert long_score.png_path == long_score.preview_paths[0]
    pixels = []
    for path in long_score.preview_paths:
        with Image.open(path) as png:
            assert png.format == "PNG"
            # Cropped to the music: narrower and shorter than the rendered page, white border kept.
            assert 1000 <= png.width < A4_PAGE_PX[0] and 150 <= png.height < A4_PAGE_PX[1]
            assert png.convert("L").getpixel((2, 2)) > 240
            pixels.append(png.convert("L").tobytes())
    assert len(set(pixels)) == 3, "each preview shows its own page"


def test_previews_stop_at_the_cap_and_stale_pages_are_removed(long_score, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "preview-3.png").write_bytes(b"left over from a longer score")
    capped = render_ly(long_score.ly_path, out, max_preview_pages=2)
    assert capped.pages == 3, "the PDF keeps every page"
    assert [p.name for p in capped.preview_paths] == ["preview.png", "preview-2.png"]
    assert sorted(p.name for p in out.glob("preview*")) == ["preview-2.png", "preview.png"]


def test_preview_names():
    assert [preview_file_name(n) for n in (1, 2, 12)] == ["preview.png", "preview-2.png", "preview-12.png"]
    assert [preview_page(n) for n in ("preview.png", "preview-2.png", "preview-12.png")] == [1, 2, 12]
    for other in ("preview-1.png", "preview-02.png", "preview-2.jpg", "score.pdf", "stems/preview.png"):
        assert preview_page(other) is None, other
    with pytest.raises(ValueError):
        preview_file_name(0)


def test_grand_staff_notation_survives_conversion(grand):
    ly = grand.ly_path.read_text()
    assert "\\new PianoStaff" in ly
    assert "\\partial 4" in ly  # the pickup
    assert re.search(r"\\(times 2/3|tuplet 3/2)", ly)  # the triplet
    assert "~" in ly  # the tie across the barline
    assert "\\tempo 4 = 92" in ly
    assert "\\key g \\major" in ly and "\\key f \\major" in ly
    assert "\\time 6/8" in ly
    assert "\\clef \"bass\"" in ly
    chords = re.search(r"\\chordmode\s*\{([^}]*)\}", ly).group(1)
    assert re.search(r"\bg4?\b", chords) and ":5" not in chords  # a G major triad, not "G5"
    assert "d2:7" in chords
    assert '#(set-paper-size "a4")' in ly and "tagline = ##f" in ly


def test_hostile_title_and_part_names_are_shown_literally_and_never_run(tmp_path):
    # A short absolute path, so that the whole title fits on the page.
    marker = Path(tempfile.gettempdir()) / f"pwned-{os.getpid()}"
    marker.unlink(missing_ok=True)
    title = f'"}}  #(system "touch {marker}")  \\markup'
    part = f'#(system "touch {marker}") bass.wav'
    score = ensemble_score(guitar_name=part, drum_name='Drums \\" } #(exit 3)')
    xml = write_musicxml(score, tmp_path / "score.musicxml")
    result = engrave(xml, tmp_path / "out", title=title, composer="C:\\temp\\me\nnew line", subtitle="$(exit 4)",
                     paper="letter")
    assert not marker.exists()
    text = pdf_text(result.pdf_path)
    assert " ".join(title.split()) in text
    # Staff names are cut to 28 characters so they fit the indent.
    assert part[:27] + "\u2026" in text
    assert 'Drums \\" } #(exit 3)' in text
    assert "C:\\temp\\me new line" in text and "$(exit 4)" in text
    ly = result.ly_path.read_text()
    assert '#(set-paper-size "letter")' in ly
    # The ensemble notation: octave clef, transposing clarinet, drums on a percussion staff.
    assert '\\clef "treble_8"' in ly and "\\transposition bes" in ly and '\\clef "percussion"' in ly
    assert "NoteHead.style = #'cross" in ly and "DrumStaff" not in ly


def test_handwritten_ly_calling_system_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    ly = tmp_path / "evil.ly"
    ly.write_text(f'\\version "2.24.0"\n#(system "touch {marker}")\n{{ c4 }}\n')
    with pytest.raises(EngraveError, match="Scheme call to 'system' at line 2") as err:
        render_ly(ly, tmp_path / "out")
    assert not marker.exists()
    assert not (tmp_path / "out" / "score.pdf").exists()
    assert Path(err.value.log_path).read_text().strip()  # the reason is kept in lilypond.log


@pytest.mark.parametrize("source", [
    '$(system "id")',  # '$' is a Scheme introducer too
    '#(ly:gulp-file "/etc/passwd")',  # reading files
    '\\include "/etc/passwd"',
    '\\markup #(let ((x 1)) x)',
    '\\override NoteHead.stencil = #system',  # a procedure passed by name
    '#(rgb-color (system "id") 0 0)',  # an allowed call with an unsafe argument
    "#`(,(system \"id\"))",  # quasi-quote unquotes
    "music = #{ c4 #}",
    '#(define x 1)',
])
def test_unsafe_scheme_is_refused(source):
    with pytest.raises(EngraveError, match="refusing to run LilyPond"):
        check_ly_safety(f'\\version "2.24.0"\n{source}\n')


def test_safe_scheme_passes():
    check_ly_safety('\\version "2.24.0"\n#(set-global-staff-size 19)\n\\paper { #(set-paper-size "a4") ragged-last-bottom = ##t }\n'
                    "\\layout { \\context { \\Score autoBeaming = ##f } }\n"
                    "{ \\once \\override NoteHead.style = #'cross c4 \\once \\override NoteHead.color = #(rgb-color 1 0 0) d4"
                    " \\once \\override TupletBracket.stencil = #ly:slur::print e4 }\n"
                    '% a comment with #(system "x") is ignored\n'
                    '\\header { title = "a \\"quoted\\" #(system) title" }\n'
                    "\\markup \\raise #-1.5 \\musicglyph #\"accordion.dot\"\n")


def test_timeout_raises_and_keeps_the_log(tmp_path):
    ly = tmp_path / "score.ly"
    ly.write_text('\\version "2.24.0"\n{ c4 d e f }\n')
    with pytest.raises(EngraveError, match="timed out") as err:
        render_ly(ly, tmp_path / "out", timeout_s=0.3)
    assert "time limit" in Path(err.value.log_path).read_text()


def test_lilypond_failure_is_an_engrave_error(tmp_path):
    ly = tmp_path / "score.ly"
    ly.write_text('\\version "2.24.0"\n{ c4 \\nosuchcommand d }\n')
    with pytest.raises(EngraveError, match="LilyPond failed") as err:
        render_ly(ly, tmp_path / "out")
    assert "nosuchcommand" in Path(err.value.log_path).read_text()


def test_sandbox_environment_and_limits(tmp_path, monkeypatch):
    monkeypatch.setenv("STEMSCRIBE_TELEGRAM_TOKEN", "123:secret")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "nope")
    status, output = run_sandboxed(["sh", "-c", "env; echo limits $(ulimit -c) $(ulimit -v) $(ulimit -t); pwd"],
                                   tmp_path, timeout_s=10, memory_bytes=512 * 1024 ** 2)
    assert status == 0
    names = {line.split("=", 1)[0] for line in output.splitlines() if "=" in line}
    assert "secret" not in output and "nope" not in output
    assert names <= {"PATH", "HOME", "LANG", "PWD", "SHLVL", "_"}  # the last three are set by sh itself
    home = "/work" if bubblewrap_available() else str(tmp_path)
    assert f"HOME={home}" in output
    assert f"limits 0 {512 * 1024} 11" in output
    assert output.strip().endswith(home)


@pytest.mark.skipif(not bubblewrap_available(), reason="bubblewrap cannot create namespaces on this machine")
def test_bubblewrap_confines_writes_and_network(tmp_path):
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    outside.mkdir()
    script = (f"touch {outside}/escaped; touch /usr/escaped; echo inside > mine.txt; "
              "python3 -c 'import socket; socket.create_connection((\"127.0.0.1\", 22), timeout=2)' "
              "&& echo NET-OPEN || echo NET-CLOSED")
    status, output = run_sandboxed(["sh", "-c", script], tmp_path, timeout_s=20, memory_bytes=1024 ** 3)
    assert not (outside / "escaped").exists() and not Path("/usr/escaped").exists()
    assert (tmp_path / "mine.txt").read_text().strip() == "inside"  # its own folder stays writable
    assert "NET-CLOSED" in output and "NET-OPEN" not in output


@pytest.mark.parametrize("text, literal", [
    ("Plain", '"Plain"'),
    ('say "hi"', '"say \\"hi\\""'),
    ("back\\slash", '"back\\\\slash"'),
    ("two\nlines\tand\x00nul", '"two lines and nul"'),
    ("#(system) $x { } \\markup", '"#(system) $x { } \\\\markup"'),
    ("Ünïcödé ♪", '"Ünïcödé ♪"'),
])
def test_escape_ly_string(text, literal):
    assert escape_ly_string(text) == literal


def test_escape_ly_string_limits_length():
    assert escape_ly_string("x" * 1000) == '"' + "x" * 199 + '\u2026"'
    assert escape_ly_string("abcdef", max_chars=4) == '"abc\u2026"'
