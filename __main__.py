"""``python -m neurofilters`` is the ``neurofilters`` command."""

import sys

from .plugin_host.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
