"""``python -m sim`` runs the ``acsim`` command."""

import sys

from sim.cli import main

sys.exit(main())
