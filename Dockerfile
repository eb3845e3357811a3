# syntax=docker/dockerfile:1
# The align service image, in two flavours chosen by the build argument FLAVOUR:
#
#   docker build --build-arg FLAVOUR=cpu -t dan-align:0.1.0-cpu .   # python slim + onnxruntime
#   docker build --build-arg FLAVOUR=gpu -t dan-align:0.1.0-gpu .   # CUDA 12 + cuDNN 9 + onnxruntime-gpu
#
# It installs and starts the service exactly as the README does (`pip install -e '.[FLAVOUR]'`,
# then `python -m service`), so what CI tests is what the image runs. Configuration comes only
# from the service's DAN_* environment variables (docker/README.md lists them); logs go to
# stdout. The runtime stage holds the virtual environment, the service, the model code it
# imports and the released model: no torch, no compiler, no pip.

ARG FLAVOUR=cpu
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG CUDA_IMAGE=nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04

# ---- the two bases: each has a Python >= 3.11 with venv and nothing else ----
FROM ${PYTHON_IMAGE} AS base-cpu

FROM ${CUDA_IMAGE} AS base-gpu
# Ubuntu 24.04's Python 3.12; onnxruntime-gpu finds CUDA 12 and cuDNN 9 in the base image.
# Not pinned: the base image's Ubuntu release fixes the Python minor version, and exact Ubuntu
# package versions vanish from the archive with each security update.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/*

# The base of the flavour asked for (a stage above, tagged through its own ARG).
# hadolint ignore=DL3006
FROM base-${FLAVOUR} AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH
WORKDIR /app

# ---- dependencies: their own layer, rebuilt only when pyproject.toml changes ----
FROM base AS deps
ARG FLAVOUR
COPY pyproject.toml ./
COPY docker/requirements.py docker/
RUN python3 -m venv /opt/venv \
    && python docker/requirements.py pyproject.toml "${FLAVOUR}" > /tmp/requirements.txt \
    && pip install --no-cache-dir -r /tmp/requirements.txt

# ---- the project, installed the README's way; pip leaves the environment afterwards ----
FROM deps AS build
ARG FLAVOUR
COPY README.md ./
COPY model/ model/
COPY service/ service/
COPY docker/healthcheck.py docker/
RUN pip install --no-cache-dir -e ".[${FLAVOUR}]" \
    && python -c "import onnxruntime, service.config" \
    && pip uninstall --yes pip setuptools

# ---- runtime: the environment and the code, run by an unprivileged user ----
FROM base AS runtime
ARG FLAVOUR
LABEL org.opencontainers.image.title="dan-align" \
      org.opencontainers.image.description="68 facial landmarks over HTTP (Deep Alignment Network, onnxruntime)" \
      org.opencontainers.image.licenses="MIT (code); model weights: non-commercial research use (300-W licence)" \
      dan-align.flavour="${FLAVOUR}"
RUN groupadd --system --gid 10001 dan \
    && useradd --system --uid 10001 --gid dan --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin dan
COPY --from=build /opt/venv /opt/venv
COPY --from=build /app /app
# The service listens on every interface of the container, on port 8000 (docker/README.md).
ENV DAN_HOST=0.0.0.0 \
    DAN_PORT=8000
USER 10001:10001
EXPOSE 8000
# Ready = model loaded and warmed up; the start period covers loading and warm-up on a GPU.
HEALTHCHECK --interval=10s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "/app/docker/healthcheck.py"]
STOPSIGNAL SIGTERM
CMD ["python", "-m", "service"]
