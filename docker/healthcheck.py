"""Container health check: exit 0 when the service answers ``GET /health/ready`` with 200.

Docker's ``HEALTHCHECK`` runs it inside the container; it reads the same
``DAN_HOST`` and ``DAN_PORT`` the service listens on (a wildcard host is reached
over loopback) and needs nothing beyond the standard library, so the image
carries no curl.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping

DEFAULT_PORT = 8000  # service.config.Settings.port
WILDCARD_HOSTS = {"", "0.0.0.0", "::", "[::]"}
TIMEOUT_S = 3.0


def ready_url(environ: Mapping[str, str]) -> str:
    host = environ.get("DAN_HOST", "127.0.0.1").strip()
    if host in WILDCARD_HOSTS:
        host = "127.0.0.1"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # an IPv6 address
    port = int(environ.get("DAN_PORT", DEFAULT_PORT))
    return f"http://{host}:{port}/health/ready"


def main() -> int:
    url = ready_url(os.environ)
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as answer:
            status = answer.status
    except urllib.error.HTTPError as error:  # 503 while loading or warming up
        status = error.code
    except (OSError, ValueError) as error:
        sys.stderr.write(f"health check: {url} unreachable: {error}\n")
        return 1
    if status != 200:
        sys.stderr.write(f"health check: {url} answered {status}, expected 200\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
