"""The `stemscribe` command line.

Exports: main, build_parser.

Subcommands: transcribe (run the pipeline here), and, registered by their own
modules, worker / submit / result / status (stemscribe.cmd_worker), models
(stemscribe.cmd_models), telegram, discord, doctor.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
import time
from pathlib import Path
from typing import Sequence

from stemscribe import __version__
from stemscribe.core.errors import OptionsError, StemscribeError, TransientError, UserError
from stemscribe.core.options import Engine, Level, Mode, Options, options_from_pairs
from stemscribe.core.progress import Reporter, Stage, overall_fraction
from stemscribe.inputs import split_inputs
from stemscribe.settings import Settings, load_settings

log = logging.getLogger("stemscribe")

#: Modules that add their own subcommands with register(subparsers).
_COMMAND_MODULES = ("cmd_worker", "cmd_models", "cmd_telegram", "cmd_discord", "cmd_doctor", "cmd_example")

def _command_word(argv: Sequence[str]) -> str | None:
    """The subcommand named in ``argv`` (the first word that is not an option or --config's value)."""
    words = iter(argv)
    for word in words:
        if word == "--config":
            next(words, None)
        elif not word.startswith("-"):
            return word
    return None


def build_parser(*, transcribe_only: bool = False) -> argparse.ArgumentParser:
    """The full argument parser, every subcommand included.

    Args:
        transcribe_only: add only the ``transcribe`` subcommand. The other
            command modules import the chat bots' and the queue's libraries
            (about a second of start-up), which ``stemscribe transcribe`` never needs.
    """
    parser = argparse.ArgumentParser(
        prog="stemscribe",
        description="Turn recordings into engraved sheet music (PDF, PNG preview, MusicXML, MIDI).",
        epilog="Run 'stemscribe COMMAND --help' for each command's options.",
    )
    parser.add_argument("--version", action="version", version=f"stemscribe {__version__}")
    parser.add_argument("--config", help="settings file (TOML or KEY=VALUE); default $STEMSCRIBE_CONFIG")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug details to stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    _add_transcribe(sub)
    for name in () if transcribe_only else _COMMAND_MODULES:
        try:
            module = importlib.import_module(f"stemscribe.{name}")
        except ModuleNotFoundError as exc:  # an optional front end not installed in this build
            if exc.name and exc.name.startswith("stemscribe."):
                continue
            raise
        module.register(sub)
    return parser


def _add_transcribe(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "transcribe",
        help="transcribe recordings into a folder of score files",
        description=(
            "Transcribe one recording (or several, one part each, with --mode multitrack) into OUT: "
            "score.pdf, preview.png, score.ly, score.musicxml, score.mid, notes.mid and result.json "
            "(plus preview-2.png ... for each later page up to 10, and stems/ with --stems). Chat-style option words such as mode:piano title:\"My Song\" "
            "may be given after the files too."
        ),
    )
    p.add_argument("inputs", nargs="+", metavar="FILE_OR_OPTION",
                   help="audio files (ogg, opus, mp3, m4a, wav, flac, webm, mp4 ...) and optional key:value words")
    p.add_argument("--out", "-o", type=Path, required=True, help="output folder (created if missing)")
    p.add_argument("--mode", choices=[m.value for m in Mode], help="auto (default), solo, piano, stems, multitrack")
    p.add_argument("--instrument", help="main instrument, e.g. guitar, violin, piano, voice")
    p.add_argument("--title", help="score title (default: from the file name)")
    p.add_argument("--composer", help="composer line on the score")
    p.add_argument("--tempo", type=float, help="tempo in quarter notes per minute (default: detected)")
    p.add_argument("--time-signature", help="e.g. 3/4 or 6/8 (default: detected)")
    p.add_argument("--key", help='e.g. "D minor" or Bb (default: detected)')
    p.add_argument("--engine", choices=[e.value for e in Engine], help="transcription engine (default auto)")
    p.add_argument("--level", choices=[lv.value for lv in Level], help="piano reduction detail (default full)")
    p.add_argument("--chords", choices=["yes", "no"], help="chord symbols above the staff")
    p.add_argument("--stems", action="store_true", help="also write the separated stems as audio")
    p.add_argument("--stem-format", choices=["opus", "flac", "wav"], help="audio format of stems (default opus)")
    p.add_argument("--separator", help="demucs model: htdemucs (default), htdemucs_6s, htdemucs_ft")
    p.add_argument("--transpose", help="an interval (+2, -m3) or the instrument to write for "
                                        "(Bb-clarinet, alto-sax, F-horn); default: concert pitch")
    p.add_argument("--json", action="store_true", help="print result.json to stdout when done")
    p.set_defaults(func=_cmd_transcribe)


def options_from_args(args: argparse.Namespace, words: str) -> Options:
    """Options from chat-style words first, then explicit flags (flags win)."""
    from stemscribe.core.options import parse_options

    base = parse_options(words)
    pairs = {
        "mode": args.mode, "instrument": args.instrument, "title": args.title, "composer": args.composer,
        "tempo": args.tempo, "time": args.time_signature, "key": args.key, "engine": args.engine,
        "level": args.level, "chords": args.chords, "format": args.stem_format, "separator": args.separator,
        "stems": True if args.stems else None, "transpose": args.transpose,
    }
    return options_from_pairs({k: v for k, v in pairs.items() if v is not None}, base=base)


class ConsoleProgress:
    """A progress bar on a terminal, plain lines otherwise (logs, CI)."""

    def __init__(self, stream=sys.stderr) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.last_stage: Stage | None = None
        self.t0 = time.perf_counter()

    def __call__(self, stage: Stage, fraction: float, message: str | None) -> None:
        pct = 100 * overall_fraction(stage, fraction)
        if self.tty:
            width = 30
            filled = int(width * pct / 100)
            label = message or stage.value
            self.stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {pct:5.1f}% {label[:40]:<40}")
            if stage is Stage.DONE:
                self.stream.write("\n")
            self.stream.flush()
        elif stage is not self.last_stage or message:
            elapsed = time.perf_counter() - self.t0
            self.stream.write(f"[{elapsed:6.1f}s] {pct:5.1f}% {stage.value}" + (f": {message}" if message else "") + "\n")
            self.stream.flush()
        self.last_stage = stage


def _cmd_transcribe(args: argparse.Namespace, settings: Settings) -> int:
    from stemscribe.core.engines.registry import ModelCache
    from stemscribe.core.pipeline import Limits, Toolkit, run

    files, words = split_inputs(args.inputs)
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise OptionsError(f"No such file: {', '.join(missing)}.",
                           hint="Check the path; option words look like mode:piano.")
    options = options_from_args(args, words)
    toolkit = Toolkit(engines=ModelCache(threads=settings.torch_threads), models_dir=settings.models_path,
                      threads=settings.torch_threads)
    result = run(files, args.out, options, toolkit=toolkit, limits=Limits.from_settings(settings),
                 reporter=Reporter(ConsoleProgress()))
    if args.json:
        print(json.dumps(result, indent=2, ensure_ascii=False))
    else:
        from stemscribe.bots.common import summary_line

        print(summary_line(result))
        for warning in result.get("warnings", []):
            print(f"note: {warning}", file=sys.stderr)
        print(f"Wrote {len(result['files'])} files to {args.out}/")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `stemscribe` console script.

    Returns:
        The process exit code: 0 ok, 2 user error (bad input or options), 1 bug.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(transcribe_only=_command_word(argv) == "transcribe")
    # Files and key:value option words may come before or after the flags
    # (`transcribe song.ogg --out x mode:piano`); argparse alone stops at the flags.
    args, extras = parser.parse_known_args(argv)
    if extras:
        if not hasattr(args, "inputs") or any(e.startswith("-") for e in extras):
            parser.error("unrecognized arguments: " + " ".join(extras))
        args.inputs = list(args.inputs) + extras
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = load_settings(config_file=args.config)
    except (ValueError, OSError) as exc:
        print(f"stemscribe: bad settings: {exc}", file=sys.stderr)
        return 2
    try:
        return int(args.func(args, settings) or 0)
    except UserError as exc:
        print(f"stemscribe: {exc.message}" + (f"\n  {exc.hint}" if exc.hint else ""), file=sys.stderr)
        return 2
    except TransientError as exc:
        print(f"stemscribe: {exc}", file=sys.stderr)
        return 1
    except StemscribeError as exc:
        log.error("failed: %s", exc, exc_info=args.verbose)
        print(f"stemscribe: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("stemscribe: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
