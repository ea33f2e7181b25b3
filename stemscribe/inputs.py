"""Command-line inputs: recordings and chat-style option words, in any order.

Exports: split_inputs.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Sequence


def split_inputs(items: Sequence[str]) -> tuple[list[Path], str]:
    """Separate file paths from ``key:value`` option words.

    An item is a file when it exists, has no colon, or starts like a path ("/", ".");
    everything else is an option word, re-quoted so that values with spaces survive
    (``title:My Song`` arrives from the shell as one argument).

    Returns:
        (files, option text for stemscribe.core.options.parse_options).
    """
    files, words = [], []
    for item in items:
        if Path(item).exists() or ":" not in item or item.startswith(("/", ".")):
            files.append(Path(item))
            continue
        key, _, value = item.partition(":")
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]  # quotes that reached us without a shell
        words.append(f"{key}:{shlex.quote(value)}")
    return files, " ".join(words)
