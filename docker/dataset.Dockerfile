# Dataset service: CPU only, no CUDA. Build from the repository root:
#   docker build -f docker/dataset.Dockerfile -t tiny-imagenet/dataset .
FROM python:3.11.7-slim-bookworm AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv
WORKDIR /src

# Dependencies first, from the lock, so source edits do not invalidate this layer.
COPY requirements/dataset.lock requirements/dataset.lock
RUN pip install --no-deps -r requirements/dataset.lock

COPY shared shared
COPY services/jobkit services/jobkit
COPY services/dataset services/dataset
RUN pip install --no-deps ./shared ./services/jobkit ./services/dataset


FROM python:3.11.7-slim-bookworm

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    DATASET_DATA_ROOT=/data \
    DATASET_HOST=0.0.0.0 \
    DATASET_PORT=8001
COPY --from=build /opt/venv /opt/venv
RUN groupadd --gid 10001 app \
    && useradd --create-home --uid 10001 --gid 10001 app \
    && mkdir -p /data \
    && chown app:app /data
USER 10001:10001
WORKDIR /home/app
VOLUME ["/data"]
EXPOSE 8001
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-m", "jobkit.healthcheck", "DATASET_PORT"]
CMD ["python", "-m", "dataset_service"]
