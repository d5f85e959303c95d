"""``python -m sim`` runs the ``acsim`` command."""

import sys

from sim.app.cli import main

sys.exit(main())
