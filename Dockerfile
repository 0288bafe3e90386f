# One image per service, each a target of this file (docker-compose.yml builds each with `target:`),
# each holding only its own extra of pyproject.toml: the gateway's, the UI's, the store's and the
# workers' images carry no torch. Build one by hand: docker build --target api -t imagesearch-api .
FROM python:3.11-slim AS base
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
RUN useradd --create-home --uid 1000 app && mkdir -p /data && chown app /data
COPY pyproject.toml README.md ./
COPY services ./services
COPY ui ./ui
COPY tools ./tools

FROM base AS store
RUN pip install ".[store]"
USER app
EXPOSE 8123
CMD ["python", "-m", "services.embedded_store", "--host", "0.0.0.0", "--port", "8123", "--data-dir", "/data/store"]

FROM base AS embedder
# The CPU build of torch unless built for a GPU host (docker-compose.gpu.yml passes a CUDA index).
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
RUN pip install --extra-index-url "$TORCH_INDEX" ".[embedder]"
USER app
EXPOSE 8001
CMD ["python", "-m", "uvicorn", "--factory", "services.embedder.main:create_app", "--host", "0.0.0.0", "--port", "8001"]

FROM base AS worker
RUN pip install ".[worker]"
USER app
CMD ["python", "-m", "celery", "-A", "services.worker.celery_app", "worker", "--loglevel", "INFO", "-Q", "ingest"]

FROM base AS api
RUN pip install ".[api]"
USER app
EXPOSE 8000
CMD ["python", "-m", "uvicorn", "--factory", "services.api.main:create_app", "--host", "0.0.0.0", "--port", "8000"]

FROM base AS ui
RUN pip install ".[ui]"
USER app
EXPOSE 7860
CMD ["python", "-m", "ui", "--host", "0.0.0.0", "--port", "7860"]
