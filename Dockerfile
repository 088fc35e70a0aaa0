# syntax=docker/dockerfile:1
# The adpipeline code location as an image: the locked environment (uv.lock, the versions tested here), the dbt
# manifest built at build time, a non-root user, no secrets (they come from the environment at run time:
# deploy/compose/.env.template, Kubernetes Secrets in deploy/helm/values.yaml). Its default command serves the code
# location over gRPC; the compose stack runs the webserver and the daemon from the same image, and every run's
# worker (DockerRunLauncher / K8sRunLauncher) too. Build from the repository root:
#     docker build -t adpipeline:$(git rev-parse --short HEAD) .
# Base images are pinned to exact tags (pin digests in your registry mirror: `docker buildx imagetools inspect`).

# ---- build: the virtualenv from the lock, then the project and its dbt manifest
FROM python:3.11.14-slim-bookworm AS build
COPY --from=ghcr.io/astral-sh/uv:0.13.9 /uv /usr/local/bin/uv
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never UV_PROJECT_ENVIRONMENT=/app/.venv
WORKDIR /app
# dependencies alone first: this layer changes only when the lock does
COPY pyproject.toml uv.lock ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-install-project --no-dev --extra deploy
COPY adpipeline.yaml ./
COPY adpipeline ./adpipeline
COPY dbt_project ./dbt_project
COPY docs/runbooks ./docs/runbooks
# The project is installed editable (uv's default): the package finds dbt_project/ beside it in /app.
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --extra deploy \
 && /app/.venv/bin/python -m adpipeline.transform.project \
 && test -s dbt_project/target/manifest.json

# ---- runtime: the same Python, the built /app, an unprivileged user
FROM python:3.11.14-slim-bookworm
RUN groupadd --system --gid 10001 adpipeline \
 && useradd --system --uid 10001 --gid adpipeline --create-home --home-dir /home/adpipeline adpipeline \
 && mkdir -p /opt/dagster/dagster_home \
 && chown adpipeline:adpipeline /opt/dagster/dagster_home
COPY --from=build /app /app
# dbt writes its run artifacts and logs inside the project: only those folders are the user's; the code is not.
RUN mkdir -p /app/dbt_project/logs && chown -R adpipeline:adpipeline /app/dbt_project/target /app/dbt_project/logs
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    DAGSTER_HOME=/opt/dagster/dagster_home \
    ADPIPELINE_HOME=/home/adpipeline/.adpipeline
WORKDIR /app
# numeric, so Kubernetes' runAsNonRoot can verify it
USER 10001:10001
EXPOSE 4000
CMD ["dagster", "code-server", "start", "-h", "0.0.0.0", "-p", "4000", "-m", "adpipeline.definitions", "-a", "defs", "--location-name", "adpipeline"]
