"""`stemscribe example`: transcribe the recording that ships with stemscribe.

Exports: register, handler, example_clip.

The clip (a synthesized flute playing the Ode to Joy theme, an Opus voice note)
is package data, so an installed stemscribe can show what it does without the
source tree: ``stemscribe example --out out/example``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from stemscribe.settings import Settings

#: The bundled clip's file name inside stemscribe/examples/.
EXAMPLE_FILE_NAME = "ode-to-joy-flute.ogg"


def example_clip() -> Path:
    """Path of the bundled example recording (installed with the package)."""
    return Path(__file__).resolve().parent / "examples" / EXAMPLE_FILE_NAME


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `example` subcommand."""
    parser = subparsers.add_parser(
        "example",
        help="transcribe the bundled example recording",
        description=(f"Transcribe the recording that ships with stemscribe ({EXAMPLE_FILE_NAME}) into OUT, "
                     "exactly as `stemscribe transcribe` would. Option words (e.g. mode:solo) may follow."),
    )
    parser.add_argument("words", nargs="*", metavar="OPTION", help="optional key:value words, as in chat")
    parser.add_argument("--out", "-o", type=Path, default=Path("out/example"),
                        help="output folder (default out/example)")
    parser.add_argument("--json", action="store_true", help="print result.json to stdout when done")
    parser.set_defaults(func=handler)


def handler(args: argparse.Namespace, settings: Settings) -> int:
    """Run the transcription of the bundled clip; returns the exit code."""
    from stemscribe import cli

    transcribe_args = cli.build_parser().parse_args(
        ["transcribe", str(example_clip()), *args.words, "--out", str(args.out), *(["--json"] if args.json else [])])
    code = transcribe_args.func(transcribe_args, settings)
    if not args.json:
        print(f"Open {args.out / 'preview.png'} or {args.out / 'score.pdf'}")
    return code
