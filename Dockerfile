# realtalk's production image: `realtalk serve`, the Realtime gateway, in front of Azure OpenAI.
#
#   docker build -t realtalk .                 (podman: add --format docker, or HEALTHCHECK is dropped)
#   docker run --rm -p 8000:8000 --read-only --tmpfs /tmp --stop-timeout 30 \
#     -e AZURE_OPENAI_ENDPOINT=https://<resource>.openai.azure.com \
#     -e AZURE_OPENAI_DEPLOYMENT_NAME=gpt-realtime-1.5 \
#     -e REALTALK_GATEWAY_SECRET=<32+ random characters> realtalk
#
# Listening on 0.0.0.0 needs client authentication: REALTALK_GATEWAY_SECRET or
# REALTALK_GATEWAY_TOKENS, or REALTALK_GATEWAY_TRUST_PRINCIPAL_HEADER=true behind Container Apps
# sign-in. Without one the gateway refuses to start and says so (exit 2): it never runs open on a
# public interface. AZURE_OPENAI_API_KEY unset means Entra ID (DefaultAzureCredential: a managed
# identity, AZURE_CLIENT_ID for a user-assigned one). No secret is ever baked into a layer.
#
# Writable paths (everything else works on a read-only root filesystem):
#   /var/lib/realtalk  the data dir (XDG_DATA_HOME and HOME): the default SQLite usage ledger,
#                      /var/lib/realtalk/realtalk/ledger.db. Declared a VOLUME; a replica's SQLite
#                      file is its own, so replicas that share limits and budgets set
#                      REALTALK_LEDGER_URL to PostgreSQL (or "off" for no ledger).
#   /tmp               scratch for Python's tempfile; mount a tmpfs (--tmpfs /tmp; podman's
#                      --read-only does it by itself).
#
# Stopping: SIGTERM drains (REALTALK_GATEWAY_DRAIN_S, default 20 s): clients are told
# (`server_shutting_down`, close 1001), in-flight replies finish, then the process exits. Give the
# container a stop timeout / termination grace period longer than the drain (docker's default 10 s
# is shorter: --stop-timeout 30).
#
# The emulator's speech stack (espeak-ng, PocketSphinx, Silero VAD) is not in this image: it
# fronts Azure, and those engines would add about 60 MB and a recogniser process per replica that
# production never uses. With no AZURE_OPENAI_ENDPOINT the gateway still starts its embedded
# emulator, with the engines that need nothing installed (energy VAD, no transcripts, tone
# replies), logs that sessions go to the emulator, and marks it in the UI: a smoke test of a fresh
# deployment works, and nobody mistakes it for Azure.

# The real base is the default; CI passes a local stand-in (--build-arg BASE_IMAGE=localhost/...).
# Pin a digest too where the registry is reachable: python:3.12.12-slim-bookworm@sha256:<digest>.
ARG BASE_IMAGE=python:3.12.12-slim-bookworm

# ---------------------------------------------------------------------------------------------
# The runtime dependencies, read from pyproject.toml. Its own stage: the install layer below is
# keyed on this list's content, so editing pyproject.toml's tool settings does not reinstall them.
FROM ${BASE_IMAGE} AS requirements
WORKDIR /src
COPY pyproject.toml ./
RUN python3 -c "import tomllib; project = tomllib.load(open('pyproject.toml', 'rb'))['project']; print('\n'.join(project['dependencies']))" > requirements.txt

# ---------------------------------------------------------------------------------------------
# Dependencies: a C compiler, the build tools in a venv of their own, and realtalk's runtime
# dependencies in /opt/realtalk (a venv without pip: the runtime stage copies it as it is).
FROM ${BASE_IMAGE} AS deps

# Build stages only, never shipped: Debian's gcc of the base's release (pinning Debian revisions
# breaks the build whenever a point release replaces them; the runtime stage has no compiler).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*

# pip verifies PyPI against the system's CA bundle (the base's ca-certificates; a build behind a
# TLS-inspecting proxy mounts the host's bundle over it for the build only, never into a layer).
ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

ARG PIP_VERSION=26.3
ARG SETUPTOOLS_VERSION=84.2.1
ARG WHEEL_VERSION=0.48.0
ARG CYTHON_VERSION=3.3.1
RUN python3 -m venv /opt/build-tools \
    && /opt/build-tools/bin/pip install --no-cache-dir \
        "pip==${PIP_VERSION}" "setuptools==${SETUPTOOLS_VERSION}" \
        "wheel==${WHEEL_VERSION}" "Cython==${CYTHON_VERSION}" \
    && python3 -m venv --without-pip /opt/realtalk

COPY --from=requirements /src/requirements.txt /tmp/requirements.txt
RUN /opt/build-tools/bin/pip --python /opt/realtalk/bin/python install --no-cache-dir \
        --requirement /tmp/requirements.txt

# ---------------------------------------------------------------------------------------------
# realtalk itself, in /opt/realtalk-app beside the dependencies' venv: a change to src/ makes a
# layer of a few MB (in the build, the registry push and the pull on deploy), not one of 250 MB.
# Its per-frame path must be compiled: optional in pyproject.toml (a missing compiler only
# warns), here a build without it fails.
FROM deps AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN /opt/build-tools/bin/pip wheel --no-cache-dir --no-deps --no-build-isolation --wheel-dir /tmp/wheels . \
    && /opt/build-tools/bin/pip --python /opt/realtalk/bin/python install --no-cache-dir --no-deps \
        --target /opt/realtalk-app /tmp/wheels/realtalk-*.whl \
    && PYTHONPATH=/opt/realtalk-app /opt/realtalk/bin/python -c "from realtalk.gateway.relay import COMPILED_FAST_PATH; assert COMPILED_FAST_PATH, 'realtalk.gateway.fastpath was not compiled'"

# ---------------------------------------------------------------------------------------------
# Runtime: the slim base, the two folders, a fixed non-root user. No compiler, no pip cache, no
# source.
FROM ${BASE_IMAGE} AS runtime

ARG BASE_IMAGE
ARG REALTALK_VERSION=0.1.0
ARG REVISION=""
LABEL org.opencontainers.image.title="realtalk" \
      org.opencontainers.image.description="realtalk serve: a secure, metered Realtime gateway in front of Azure OpenAI gpt-realtime" \
      org.opencontainers.image.version="${REALTALK_VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.base.name="${BASE_IMAGE}"

# A fixed uid/gid (10001), so volume ownership and a platform's runAsUser can name it.
RUN groupadd --gid 10001 realtalk \
    && useradd --uid 10001 --gid 10001 --home-dir /var/lib/realtalk --no-create-home --no-log-init \
        --shell /usr/sbin/nologin realtalk \
    && install -d -o 10001 -g 10001 -m 0750 /var/lib/realtalk \
    && install -d -o root -g root -m 0755 /app

COPY --from=deps /opt/realtalk /opt/realtalk
COPY --from=build /opt/realtalk-app /opt/realtalk-app

# PYTHONDONTWRITEBYTECODE: the bytecode of both folders was compiled at install; nothing is
# written at run time (the root filesystem may be read-only). The gateway listens on every interface of the
# container, port 8000; REALTALK_GATEWAY_HOST/PORT change it.
ENV PATH=/opt/realtalk-app/bin:/opt/realtalk/bin:$PATH \
    PYTHONPATH=/opt/realtalk-app \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/var/lib/realtalk \
    XDG_DATA_HOME=/var/lib/realtalk \
    REALTALK_GATEWAY_HOST=0.0.0.0 \
    REALTALK_GATEWAY_PORT=8000

VOLUME ["/var/lib/realtalk"]
# An empty, read-only working directory: a .env here is read only if one is mounted on purpose.
WORKDIR /app
USER 10001:10001
EXPOSE 8000
STOPSIGNAL SIGTERM

# /healthz: the process answers (no upstream call; /readyz does that, for the platform's probe).
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('REALTALK_GATEWAY_PORT', '8000') + '/healthz', timeout=4)"]

# `realtalk serve` (other commands work too: `docker run ... realtalk doctor`).
ENTRYPOINT ["realtalk"]
CMD ["serve"]
