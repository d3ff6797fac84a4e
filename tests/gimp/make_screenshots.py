"""Take the screenshots of ``docs/gimp.md`` from a real GIMP 3 running under Xvfb in the chroot.

Installs the plug-in (built-in filters only) into a fresh profile, opens
scikit-image's cat photo in the GIMP window, runs ``Filters > Neural > Dream >
DeepDream...`` interactively, asks for a preview (Alt+P) and waits for it,
photographs the dialog the plug-in built from the filter's parameter
declarations, presses OK and photographs the window with the result.

Run as root (installs ``xvfb x11-apps xdotool`` into the chroot once)::

    .venv/bin/python tests/gimp/make_screenshots.py [--out docs/assets]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
sys.path.insert(0, os.fspath(HERE))

from gimp_chroot import GimpChroot, ensure_chroot, python_bind_paths  # noqa: E402
from gimp_gui import GimpGui  # noqa: E402
from gimp_session import GimpSession, plugin_environment  # noqa: E402

GUI_BATCH = """
import os
import time
from gi.repository import Gimp, Gio
image = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path("{photo}"))
Gimp.Display.new(image)
Gimp.displays_flush()
layer = image.get_layers()[0]
image.set_selected_layers([layer])
procedure = Gimp.get_pdb().lookup_procedure("neurofilters-deepdream")
config = procedure.create_config()
config.set_property("run-mode", Gimp.RunMode.INTERACTIVE)
config.set_property("image", image)
config.set_core_object_array("drawables", [layer])
result = procedure.run(config)
Gimp.displays_flush()
open("{done}", "w").write(result.index(0).value_nick)
started = time.time()
while not os.path.exists("{done}.release") and time.time() - started < 300:  # GIMP quits after this code
    time.sleep(0.2)
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=HERE.parents[1] / "docs" / "assets")
    args = parser.parse_args(argv)
    for key, value in plugin_environment(with_test_plugin=False).items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    root = ensure_chroot(extra_packages=("xvfb", "x11-apps", "xdotool"))
    from skimage import data

    with GimpChroot(root, python_bind_paths(sys.executable)) as chroot:
        session = GimpSession(chroot, "nf-shots")
        session.install()
        Image.fromarray(np.asarray(data.chelsea())).save(session.host / "chelsea.png")
        done = f"{session.inside}/done.txt"
        calls = chroot.host_path(f"{session.inside}/calls.jsonl")
        code = GUI_BATCH.format(photo=f"{session.inside}/chelsea.png", done=done)
        with GimpGui(session, code, env={"NEUROFILTERS_GIMP_LOG": f"{session.inside}/calls.jsonl"}) as gui:
            dialog = gui.window("^DeepDream", timeout=300)
            time.sleep(3)  # let it draw
            gui.press(dialog, "alt+p")
            deadline = time.monotonic() + 300
            while not (calls.exists() and '"status": "done"' in calls.read_text()):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"The dialog's preview did not finish within 5 minutes.\n{gui.log()}")
                time.sleep(1)
            time.sleep(2)
            dialog_shot = gui.grab(dialog, "dialog")
            gui.press(dialog, "Return")
            deadline = time.monotonic() + 900
            while not chroot.host_path(done).exists():
                if time.monotonic() > deadline:
                    raise RuntimeError(f"DeepDream did not finish within 15 minutes.\n{gui.log()}")
                time.sleep(1)
            time.sleep(3)
            window = gui.window("integer.*GIMP")  # the image window's title names the precision
            result_shot = gui.grab(window, "result")
            chroot.host_path(done + ".release").write_text("")
            print(f"DeepDream finished: {chroot.host_path(done).read_text()}")
            print(calls.read_text().strip())
        args.out.mkdir(parents=True, exist_ok=True)
        for shot, name in ((dialog_shot, "gimp-dialog.png"), (result_shot, "gimp-result.png")):
            picture = Image.fromarray(shot)
            # 256 colours keep the photo-heavy screenshot small in the repository
            picture.quantize(colors=256, dither=Image.Dither.FLOYDSTEINBERG).save(args.out / name, optimize=True)
    print(f"wrote {args.out / 'gimp-dialog.png'} and {args.out / 'gimp-result.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
