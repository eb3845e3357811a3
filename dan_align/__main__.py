"""``python -m dan_align``: the ``dan-align`` command (``dan_align.cli``)."""

from __future__ import annotations

import sys

from dan_align.cli import main

if __name__ == "__main__":
    sys.exit(main())
