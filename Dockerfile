# Application image: the Temporal worker by default; `python -m api` serves the HTTP API (port 8000,
# set OMS_API_HOST=0.0.0.0 in a container); `python starter.py ...` for one-off commands.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    PATH="/app/.venv/bin:${PATH}"

RUN pip install --no-cache-dir uv==0.13.9

WORKDIR /app

# Dependencies first, so source edits don't invalidate this layer.
COPY pyproject.toml uv.lock ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev

COPY . .
# Our own bytecode, compiled now: the source is read-only at run time and the workflow sandbox imports
# workflows/*.py afresh for every run (without a cache it would compile them for every order).
RUN python -m compileall -q -x '/\.venv/' /app

# The worker's build id (docs/versioning.md), baked in so the image names the code it runs:
#   docker build --build-arg OMS_WORKER_BUILD_ID=2026.06.1-$(git rev-parse --short HEAD) .
# Left empty (the default) the worker runs unversioned.
ARG OMS_WORKER_BUILD_ID=
ENV OMS_WORKER_BUILD_ID=${OMS_WORKER_BUILD_ID}

# Run unprivileged; the venv and source stay root-owned and read-only to the app.
RUN useradd --system --uid 10001 --no-create-home oms
USER oms

EXPOSE 8000
CMD [".venv/bin/python", "worker.py"]
