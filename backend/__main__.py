"""``python -m backend`` runs the same CLI as the ``headrecon`` command."""

import sys

from .cli import main

sys.exit(main())
