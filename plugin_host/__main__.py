"""``python -m plugin_host`` is the ``neurofilters`` command."""

import sys

from ._cli import main

sys.exit(main())
