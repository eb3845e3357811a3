"""Where the repository expects its 300-W data: ``../shared/data/300w`` beside the checkout.

Torch-free and dependency-free, so that training, evaluation, the benchmarks and
the tests take their default data root from one place. The path is found from
this file, not from the current folder, so a command run from any folder finds
the data of the checkout it belongs to.
"""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
# The 300-W folder (official layout: afw/, lfpw/, helen/ with .jpg + .pts, and boxes.csv).
DEFAULT_DATA_ROOT = REPO_ROOT.parent / "shared" / "data" / "300w"
