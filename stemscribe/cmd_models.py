"""`stemscribe models`: list the stem-separation models on this server and download them.

Exports: register, handle_list, handle_fetch.

``stemscribe models list`` shows each offered model, whether its weights are
installed and where. ``stemscribe models fetch NAME [--dir DIR]`` downloads a
model's weights (checksums verified) into the models folder, which is
``STEMSCRIBE_MODELS_DIR`` (default ``~/.cache/stemscribe/models``); the Docker
build runs it so that workers never need a network.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from stemscribe.core.errors import TransientError
from stemscribe.core.models import SEPARATION_MODELS, ModelRegistry, fetch
from stemscribe.settings import Settings


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``models`` command with its ``list`` and ``fetch`` subcommands."""
    parser = subparsers.add_parser("models", help="list or download the stem-separation models",
                                   description="List or download the demucs models used for stems mode.")
    commands = parser.add_subparsers(dest="models_command", metavar="{list,fetch}", required=True)
    lister = commands.add_parser("list", help="show which separation models are installed",
                                 description="Show each separation model, whether it is installed, and where.")
    lister.add_argument("--dir", type=Path, default=None,
                        help="models folder to look in (default: STEMSCRIBE_MODELS_DIR)")
    lister.set_defaults(func=handle_list)
    fetcher = commands.add_parser("fetch", help="download a separation model's weights",
                                  description="Download a separation model's weights into the models folder. "
                                              "Needs network access; checksums are verified.")
    fetcher.add_argument("name", choices=list(SEPARATION_MODELS), help="the model to download, e.g. htdemucs")
    fetcher.add_argument("--dir", type=Path, default=None,
                         help="folder to download into (default: STEMSCRIBE_MODELS_DIR)")
    fetcher.set_defaults(func=handle_fetch)


def _folder(args: argparse.Namespace, settings: Settings) -> Path:
    return args.dir if args.dir is not None else settings.models_path


def handle_list(args: argparse.Namespace, settings: Settings) -> int:
    """Print one line per model; exit code 0, or 1 when the default model is missing."""
    folder = _folder(args, settings)
    print(f"models folder: {folder}")
    default_present = False
    for status in ModelRegistry(folder).list():
        if status.present and status.backend == "onnx":
            state = f"installed  {status.size_bytes / 1e6:7.1f} MB  {status.file} (ONNX export, onnxruntime)"
        elif status.present:
            state = f"installed  {status.size_bytes / 1e6:7.1f} MB  {status.path}"
        else:
            state = f"missing    run: stemscribe models fetch {status.name}"
        print(f"  {status.name:<12} {state}\n  {'':<12} {status.description}")
        default_present |= status.name == "htdemucs" and status.present
    return 0 if default_present else 1


def handle_fetch(args: argparse.Namespace, settings: Settings) -> int:
    """Download one model, printing progress per file; exit code 0 on success, 1 on failure."""
    folder = _folder(args, settings)
    last_percent = [-10]

    def progress(done: int, total: int | None) -> None:
        if total:
            percent = int(100 * done / total)
            if percent >= last_percent[0] + 10 or done == total:
                last_percent[0] = percent if done < total else -10
                print(f"  {done / 1e6:7.1f} of {total / 1e6:.1f} MB", flush=True)

    print(f"fetching {args.name} into {folder}", flush=True)
    try:
        status = fetch(args.name, folder, progress=progress)
    except TransientError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if not status.present:
        print(f"error: {args.name} is still incomplete (missing {', '.join(status.missing)})", file=sys.stderr)
        return 1
    print(f"{args.name} installed: {status.size_bytes / 1e6:.1f} MB in {status.path}")
    return 0
