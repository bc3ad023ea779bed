"""``python -m atso_med`` is the ``atso-med`` command."""

import sys

from atso_med.cli.main import main

sys.exit(main())
