"""``python -m protozoo`` is the ``protozoo`` command."""

import sys

from protozoo.cli import main

sys.exit(main())
