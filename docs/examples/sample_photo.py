"""Write one of scikit-image's sample photos (public-domain test images) to a file.

Usage: python docs/examples/sample_photo.py NAME OUTPUT, e.g. ``chelsea build/chelsea.png``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image
from skimage import data

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "brick", "camera")


def main(argv: list[str]) -> int:
    """Write photo ``argv[0]`` to path ``argv[1]``."""
    if len(argv) != 2 or argv[0] not in PHOTOS:
        print(f"usage: sample_photo.py {{{','.join(PHOTOS)}}} OUTPUT. Received: {' '.join(argv) or 'nothing'}", file=sys.stderr)
        return 2
    output = Path(argv[1])
    output.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(getattr(data, argv[0])()).save(output)
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
