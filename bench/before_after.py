#!/usr/bin/env python3
"""Before/after picture for the README: what users get today next to stemscribe, on one clip.

Left, "before": the route people use today, plain basic-pitch notes.mid opened in
MuseScore 3 (`mscore3 -o peer.png notes.mid`, headless, as ../shared/bench/peers.py
runs it). Right, "after": stemscribe's preview.png for the same recording
(`stemscribe transcribe`, mode auto). Both first pages are cropped to the music,
scaled to one height, labelled, and written side by side as a small palette PNG.

    .venv/bin/python bench/before_after.py [--clip 02] [--ours DIR] [--out docs/images/before-after.png]

--ours reuses an existing stemscribe output folder (preview.png) instead of running
the pipeline. Needs basic-pitch, mscore3 (apt musescore3) and Pillow.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image, ImageChops, ImageDraw, ImageFont

ROOT = Path(__file__).resolve().parents[1]
DEVSET = ROOT.parent / "shared" / "devset"
#: Height of each panel in the picture (pixels) and the gap and label band around them.
PANEL_HEIGHT_PX = 900
GAP_PX = 40
LABEL_PX = 56
#: The picture must stay small enough for a README.
MAX_BYTES = 400_000


def find_clip(devset: Path, prefix: str) -> Path:
    matches = sorted(p for p in devset.iterdir() if p.name.startswith(prefix) and (p / "meta.json").exists())
    if not matches:
        raise SystemExit(f"no clip starting with {prefix!r} in {devset}")
    return matches[0]


def audio_of(clip: Path) -> Path:
    return next(p for p in sorted(clip.iterdir()) if p.name.startswith("audio."))


def peer_png(audio: Path, work: Path) -> Path:
    """basic-pitch MIDI opened by MuseScore 3, first page as PNG."""
    from basic_pitch import ICASSP_2022_MODEL_PATH
    from basic_pitch.inference import predict

    _, midi, _ = predict(str(audio), ICASSP_2022_MODEL_PATH)
    mid = work / "notes.mid"
    midi.write(str(mid))
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    subprocess.run(["mscore3", "-o", str(work / "peer.png"), str(mid)], env=env, check=True,
                   capture_output=True, timeout=300)
    pages = sorted(work.glob("peer*.png"))
    if not pages:
        raise SystemExit("MuseScore wrote no PNG")
    return pages[0]


def ours_png(audio: Path, work: Path, title: str) -> Path:
    """stemscribe's preview.png for the recording (mode auto), titled like the clip."""
    from dataclasses import replace

    from stemscribe.core.options import parse_options
    from stemscribe.core.pipeline import run

    out = work / "stemscribe"
    out.mkdir()
    run([audio], out, replace(parse_options("mode:auto"), title=title))
    return out / "preview.png"


def crop_to_music(path: Path) -> Image.Image:
    """The page on white, cropped to its ink with a small margin."""
    page = Image.open(path)
    if page.mode in ("RGBA", "LA", "P"):
        page = page.convert("RGBA")
        white = Image.new("RGBA", page.size, "white")
        page = Image.alpha_composite(white, page)
    page = page.convert("L")
    ink = ImageChops.invert(page).point(lambda v: 255 if v > 40 else 0)
    box = ink.getbbox() or (0, 0, page.width, page.height)
    margin = 12
    box = (max(0, box[0] - margin), max(0, box[1] - margin), min(page.width, box[2] + margin),
           min(page.height, box[3] + margin))
    return page.crop(box)


def _font(size: int) -> ImageFont.ImageFont:
    for name in ("DejaVuSans-Bold.ttf", "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"):
        try:
            return ImageFont.truetype(name, size)
        except OSError:
            continue
    return ImageFont.load_default()


def side_by_side(left: Image.Image, right: Image.Image, labels: tuple[str, str]) -> Image.Image:
    """Both panels at PANEL_HEIGHT_PX high, labels above, on white."""
    panels = []
    for img in (left, right):
        scale = PANEL_HEIGHT_PX / img.height
        panels.append(img.resize((max(1, round(img.width * scale)), PANEL_HEIGHT_PX), Image.LANCZOS))
    width = panels[0].width + panels[1].width + 3 * GAP_PX
    canvas = Image.new("L", (width, PANEL_HEIGHT_PX + LABEL_PX + GAP_PX), 255)
    draw = ImageDraw.Draw(canvas)
    font = _font(28)
    x = GAP_PX
    for panel, label in zip(panels, labels):
        draw.text((x, 12), label, fill=0, font=font)
        canvas.paste(panel, (x, LABEL_PX))
        x += panel.width + GAP_PX
    divider = GAP_PX + panels[0].width + GAP_PX // 2
    draw.line([(divider, LABEL_PX), (divider, LABEL_PX + PANEL_HEIGHT_PX)], fill=170, width=2)
    return canvas


def save_small(img: Image.Image, path: Path) -> int:
    """Write a 16-grey palette PNG, shrinking until it is under MAX_BYTES; returns the size."""
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        img.quantize(colors=16).save(path, optimize=True)
        size = path.stat().st_size
        if size <= MAX_BYTES or img.width < 800:
            return size
        img = img.resize((int(img.width * 0.85), int(img.height * 0.85)), Image.LANCZOS)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--devset", type=Path, default=DEVSET)
    ap.add_argument("--clip", default="02", help="clip name prefix (default 02, the violin jig)")
    ap.add_argument("--ours", type=Path, help="an existing stemscribe output folder for this clip")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "images" / "before-after.png")
    args = ap.parse_args(argv)
    clip = find_clip(args.devset, args.clip)
    audio = audio_of(clip)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        before = crop_to_music(peer_png(audio, work))
        title = json.loads((clip / "meta.json").read_text()).get("title", clip.name)
        after = crop_to_music(args.ours / "preview.png" if args.ours else ours_png(audio, work, title.title()))
    picture = side_by_side(before, after, ("Before: basic-pitch MIDI → MuseScore 3 import", "After: stemscribe"))
    size = save_small(picture, args.out)
    print(f"{args.out}: {picture.width}x{picture.height}, {size // 1000} KB ({clip.name})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
