"""``python -m neurofilters`` is the ``neurofilters`` command."""

import sys

from .plugin_host.cli.main import main

sys.exit(main())
