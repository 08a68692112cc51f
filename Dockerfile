# Two images, one file (docs/operations.md, "The two images"):
#   runtime    the order worker (default) and the HTTP API (`python -m api`, port 8000; set
#              OMS_API_HOST=0.0.0.0 in a container); `python starter.py ...` for one-off commands.
#              Without the `analytics` extra: no pandas, statsforecast, matplotlib, numpy, numba.
#   analytics  the analytics worker (`python worker.py --role analytics`, the demand forecast): the
#              same base, libraries and source, plus the extra.
#   docker build --target runtime -t oms .      docker build --target analytics -t oms-analytics .
# The layers up to the runtime's libraries are shared; the extra is a layer of its own above them (700
# MB, rebuilt only when uv.lock changes), and the source comes last in each.

# ---- what both images start from: Python, uv, the unprivileged user, the runtime's libraries ----
FROM python:3.11-slim AS base

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    PATH="/app/.venv/bin:${PATH}"

RUN pip install --no-cache-dir uv==0.13.9

# The images run unprivileged; the venv and source stay root-owned and read-only to the app.
RUN useradd --system --uid 10001 --no-create-home oms

WORKDIR /app

# Dependencies first, so source edits don't invalidate this layer.
COPY pyproject.toml uv.lock ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev

# ---- the analytics image's libraries: the runtime's plus the extra ----
FROM base AS analytics-libraries
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --extra analytics

# ---- the images ----
# Each: our source on top of its libraries, compiled; the build id; the user; the command.
# Our own bytecode is compiled in each image: the source is read-only at run time and the workflow
# sandbox imports workflows/*.py afresh for every run (without a cache it would compile them for every
# order). The worker's build id (docs/versioning.md) is baked in so the image names the code it runs;
# both images of a release get the same one (one build = one deployment version for every queue):
#   docker build --target runtime --build-arg OMS_WORKER_BUILD_ID=2026.06.1-$(git rev-parse --short HEAD) .
# Left empty (the default) the workers run unversioned.
FROM analytics-libraries AS analytics
COPY . .
RUN python -m compileall -q -x '/\.venv/' /app
ARG OMS_WORKER_BUILD_ID=
ENV OMS_WORKER_BUILD_ID=${OMS_WORKER_BUILD_ID}
USER oms
CMD [".venv/bin/python", "worker.py", "--role", "analytics"]

# Last, so that a plain `docker build .` builds it.
FROM base AS runtime
COPY . .
RUN python -m compileall -q -x '/\.venv/' /app
ARG OMS_WORKER_BUILD_ID=
ENV OMS_WORKER_BUILD_ID=${OMS_WORKER_BUILD_ID}
USER oms
EXPOSE 8000
CMD [".venv/bin/python", "worker.py"]
