"""Checking a generated .ly for Scheme before LilyPond runs it.

Exports: check_ly_safety.

LilyPond evaluates any Scheme after ``#`` or ``$`` (``#(system "...")`` runs a
shell command), and 2.24 removed ``-dsafe``. check_ly_safety reads every Scheme
expression in the file and refuses anything but an allow-list of harmless forms:
literals, quoted data, grob callbacks and a few layout calls. ``\\include`` and
embedded LilyPond inside Scheme are refused too.
"""

from __future__ import annotations

import re

from .errors import EngraveError

_ALLOWED_CALLS = {"set-global-staff-size", "set-paper-size", "rgb-color", "cons", "make-dynamic-script",
                  "ly:make-moment", "ly:make-duration", "tuplet-number::fraction-with-notes",
                  "tuplet-number::non-default-fraction-with-notes", "tuplet-number::append-note-wrapper"}

_ALLOWED_SYMBOL_RE = re.compile(r"^(UP|DOWN|LEFT|RIGHT|CENTER|(ly:)?[a-z][a-z-]*::[a-z][a-z-]*)$")

_NUMBER_RE = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$|^[+-]?\d+/\d+$")

_DELIMITERS = set(" \t\r\n()\";")




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


