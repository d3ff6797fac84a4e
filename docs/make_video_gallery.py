"""The video page's clip: independent frames beside coherent ones (``python docs/make_video_gallery.py``).

Makes the synthetic test clip (scikit-image's astronaut panned and zoomed, 48 frames of 256 x 192, see
``tests/video_clip.py``), runs ``neurofilters video`` on it with DeepDream's defaults twice, with
``--coherence 0`` and with the default, and writes ``docs/assets/video-coherence.gif``: the two side by
side, labelled, looping. Seeded, so a rerun gives the same frames.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from video_clip import make_clip  # noqa: E402

OUTPUT = ROOT / "docs" / "assets" / "video-coherence.gif"


def main() -> None:
    """Render both runs and write the side-by-side GIF."""
    with tempfile.TemporaryDirectory() as folder:
        clip = Path(folder) / "clip.mp4"
        make_clip(clip, 48)
        runs = {}
        for label, flags in (("independent frames (--coherence 0)", ["--coherence", "0"]), ("coherent (default)", [])):
            out = Path(folder) / f"run{len(runs)}"
            command = [sys.executable, "-m", "neurofilters.plugin_host", "video", str(clip), "-o", str(out), "--filter", "deepdream", "-q", *flags]
            print("$", " ".join(command[2:]))
            subprocess.run(command, check=True)
            runs[label] = sorted(out.glob("frame-*.png"))
        sheets = []
        for pair in list(zip(*runs.values()))[::2]:  # every other frame, shown at half the rate: under 3 MB
            images = [Image.open(path).convert("RGB") for path in pair]
            width, height = images[0].size
            sheet = Image.new("RGB", (2 * width + 8, height + 22), "white")
            draw = ImageDraw.Draw(sheet)
            for index, (label, image) in enumerate(zip(runs, images)):
                sheet.paste(image, (index * (width + 8), 22))
                draw.text((index * (width + 8) + 4, 5), label, fill="black")
            sheets.append(sheet.quantize(colors=255, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE))
        sheets[0].save(OUTPUT, save_all=True, append_images=sheets[1:], duration=80, loop=0, optimize=True)
    print(f"wrote {OUTPUT} ({OUTPUT.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
