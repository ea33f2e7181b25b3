"""`stemscribe models`: list the stem-separation models on this server, download and export them.

Exports: register, handle_list, handle_fetch, handle_export_onnx, handle_quantize.

``stemscribe models list`` shows each offered model, whether its weights are
installed and where. ``stemscribe models fetch NAME [--dir DIR]`` downloads a
model's weights (checksums verified) into the models folder, which is
``STEMSCRIBE_MODELS_DIR`` (default ``~/.cache/stemscribe/models``); the Docker
build runs it so that workers never need a network. ``stemscribe models export-onnx
NAME [--dir DIR] [--output PATH] [--force]`` writes an ONNX export of a model's
installed torch weights (``core.export_onnx``) to ``DIR/NAME.onnx``, after which
stems mode runs that model on onnxruntime. ``stemscribe models quantize NAME
[--dir DIR]`` writes an int8 copy of ``DIR/NAME.onnx`` as ``DIR/NAME.int8.onnx``,
which stems mode then prefers (faster, same stems to about -40 dB; README).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from stemscribe.core.errors import ModelMissingError, TransientError
from stemscribe.core.models import INT8_SUFFIX, SEPARATION_MODELS, ModelRegistry, fetch
from stemscribe.settings import Settings


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``models`` command with its ``list``, ``fetch``, ``export-onnx`` and ``quantize`` subcommands."""
    parser = subparsers.add_parser("models", help="list, download or export the stem-separation models",
                                   description="List, download or export to ONNX the demucs models used for "
                                               "stems mode.")
    commands = parser.add_subparsers(dest="models_command", metavar="{list,fetch,export-onnx,quantize}", required=True)
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
    exporter = commands.add_parser(
        "export-onnx", help="export a model's torch weights to ONNX, for onnxruntime",
        description="Export an installed separation model (its torch weights, e.g. from `stemscribe models "
                    "fetch htdemucs`) to an ONNX file. Saved as NAME.onnx in the models folder, the export is "
                    "what stems mode then runs, on onnxruntime. Single-model htdemucs bags only "
                    "(htdemucs, htdemucs_6s; not the 4-model htdemucs_ft).")
    exporter.add_argument("name", metavar="NAME", help="the model to export, e.g. htdemucs")
    exporter.add_argument("--dir", type=Path, default=None,
                          help="models folder holding the weights (default: STEMSCRIBE_MODELS_DIR)")
    exporter.add_argument("--output", type=Path, default=None, metavar="PATH",
                          help="file to write (default: NAME.onnx in the models folder)")
    exporter.add_argument("--force", action="store_true", help="replace an existing output file")
    exporter.set_defaults(func=handle_export_onnx)
    quantizer = commands.add_parser(
        "quantize", help="make an int8 copy of a model's ONNX export (faster separation)",
        description="Write NAME.int8.onnx beside NAME.onnx in the models folder: the export with the "
                    "weights of its matrix products stored as int8. Stems mode prefers the copy; delete it "
                    "to go back to the float export.")
    quantizer.add_argument("name", metavar="NAME", help="the model whose export to quantize, e.g. htdemucs")
    quantizer.add_argument("--dir", type=Path, default=None,
                           help="models folder holding NAME.onnx (default: STEMSCRIBE_MODELS_DIR)")
    quantizer.set_defaults(func=handle_quantize)


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


def handle_export_onnx(args: argparse.Namespace, settings: Settings) -> int:
    """Export one model's torch weights to ONNX; exit code 0 on success, 1 when it cannot be done."""
    from stemscribe.core.export_onnx import export_htdemucs

    folder = _folder(args, settings)
    target = args.output if args.output is not None else folder / f"{args.name}.onnx"
    if target.exists() and not args.force:
        print(f"error: {target} already exists; add --force to replace it", file=sys.stderr)
        return 1
    registry = ModelRegistry(folder)
    try:
        registry.status(args.name)
        model = registry.load_torch(args.name)
    except KeyError as exc:
        print(f"error: {exc.args[0]}", file=sys.stderr)
        return 1
    except ModelMissingError as exc:
        print(f"error: {exc.message}" + (f"\n  {exc.hint}" if exc.hint else ""), file=sys.stderr)
        return 1
    print(f"exporting {args.name} to {target} (tracing one segment: about 20 s and 5 GB of memory "
          "for htdemucs)", flush=True)
    try:
        export_htdemucs(model, target)
    except ValueError as exc:
        print(f"error: {args.name} cannot be exported: {exc}", file=sys.stderr)
        return 1
    print(f"{args.name} exported: {target.stat().st_size / 1e6:.1f} MB in {target}")
    if target.resolve() != (folder / f"{args.name}.onnx").resolve():
        print(f"  (stems mode reads {folder / f'{args.name}.onnx'}; move the file there to use it)")
    else:
        stale = folder / f"{args.name}{INT8_SUFFIX}"
        if stale.is_file():
            print(f"  note: {stale} is still there and is used instead of this export; "
                  "delete it, or remake it from the new export")
        else:
            print(f"  stems mode now runs {args.name} on onnxruntime")
    return 0


def handle_quantize(args: argparse.Namespace, settings: Settings) -> int:
    """Write ``NAME.int8.onnx`` from ``NAME.onnx``; exit code 0 on success, 1 when it cannot be done."""
    from stemscribe.core.separate_onnx import quantize_export

    folder = _folder(args, settings)
    source, target = folder / f"{args.name}.onnx", folder / f"{args.name}{INT8_SUFFIX}"
    if not source.is_file():
        print(f"error: {source} not found; put an export there first (scripts/fetch-demucs-onnx, "
              f"or stemscribe models export-onnx {args.name})", file=sys.stderr)
        return 1
    print(f"quantizing {source} to {target}", flush=True)
    try:
        quantize_export(source, target)
    except ValueError as exc:
        print(f"error: {source} cannot be quantized: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # onnxruntime / onnx raise their own types for an unreadable file
        if not type(exc).__module__.startswith(("onnxruntime", "onnx", "google.protobuf")):
            raise
        print(f"error: {source} cannot be read as an ONNX file ({exc}); fetch or export it again",
              file=sys.stderr)
        return 1
    print(f"{args.name}: int8 copy written, {target.stat().st_size / 1e6:.1f} MB in {target}; "
          "stems mode now uses it (delete it to go back)")
    return 0
