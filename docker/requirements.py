"""Print the serving requirements of pyproject.toml, one per line, for one flavour (cpu or gpu).

    python docker/requirements.py pyproject.toml cpu > requirements.txt

The Dockerfile installs these in a layer of their own before the code is copied,
so that a code change does not reinstall onnxruntime. The flavour is one of the
project's serving extras; ``pip install -e '.[FLAVOUR]'`` then finds everything
already there and installs only the project itself.
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from pathlib import Path

FLAVOURS = ("cpu", "gpu")


def requirements(pyproject: Path, flavour: str) -> list[str]:
    """The project's dependencies plus those of the serving extra ``flavour``."""
    if flavour not in FLAVOURS:
        raise ValueError(f"Invalid flavour {flavour!r}. Only {', '.join(FLAVOURS)} are supported.")
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    extras = project.get("optional-dependencies", {})
    if flavour not in extras:
        raise ValueError(
            f"{pyproject} has no optional dependency group {flavour!r}; "
            f"it has {', '.join(sorted(extras)) or 'none'}"
        )
    return [*project["dependencies"], *extras[flavour]]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("pyproject", type=Path, help="the project's pyproject.toml")
    parser.add_argument("flavour", choices=FLAVOURS, help="serving runtime: cpu or gpu")
    args = parser.parse_args(argv)
    sys.stdout.write("".join(f"{line}\n" for line in requirements(args.pyproject, args.flavour)))


if __name__ == "__main__":
    main()
