"""``python -m neurofilters.plugin_host`` is the ``neurofilters`` command."""

import sys

from .cli.main import main

sys.exit(main())
