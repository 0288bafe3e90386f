# One image per service, chosen by the build argument EXTRA (embedder, store, worker, api, ui), so the
# gateway's and the UI's images carry no torch. docker-compose.yml builds each.
FROM python:3.11-slim
ARG EXTRA=api
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY services ./services
COPY ui ./ui
COPY tools ./tools
# The embedder wants the CPU build of torch unless the image is built for a GPU host.
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
RUN if [ "$EXTRA" = "embedder" ]; then pip install --extra-index-url "$TORCH_INDEX" ".[embedder]"; \
    else pip install ".[$EXTRA]"; fi
RUN useradd --create-home --uid 1000 app && mkdir -p /data && chown app /data
USER app
