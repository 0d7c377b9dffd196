"""``python -m cicada_async``: the ``cicada-async`` command line (see :mod:`cicada_async.cli`)."""

from __future__ import annotations

import sys

from cicada_async.cli import main

if __name__ == "__main__":
    sys.exit(main())
