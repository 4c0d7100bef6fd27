"""``python -m hnseg …`` = the ``hnseg`` command (used inside the container, where no script is installed)."""

import sys

from hnseg.cli import main

sys.exit(main())
