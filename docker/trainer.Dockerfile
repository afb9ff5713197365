# Trainer service on the official TensorFlow GPU image (CUDA and cuDNN matching TensorFlow).
# Build from the repository root:
#   docker build -f docker/trainer.Dockerfile -t tiny-imagenet/trainer .
FROM tensorflow/tensorflow:2.21.0-gpu AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH
# The venv sees the image's TensorFlow (system site-packages) and adds only what is missing.
RUN python3 -m venv --system-site-packages /opt/venv
WORKDIR /src

COPY requirements/trainer.lock requirements/trainer.lock
RUN pip install --no-deps -r requirements/trainer.lock

COPY shared shared
COPY services/jobkit services/jobkit
COPY services/trainer services/trainer
RUN pip install --no-deps ./shared ./services/jobkit ./services/trainer


FROM tensorflow/tensorflow:2.21.0-gpu

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    KERAS_BACKEND=tensorflow \
    TRAINER_DATA_ROOT=/data \
    TRAINER_HOST=0.0.0.0 \
    TRAINER_PORT=8002
COPY --from=build /opt/venv /opt/venv
RUN groupadd --gid 10001 app \
    && useradd --create-home --uid 10001 --gid 10001 app \
    && mkdir -p /data \
    && chown app:app /data
USER 10001:10001
WORKDIR /home/app
VOLUME ["/data"]
EXPOSE 8002
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-m", "jobkit.healthcheck", "TRAINER_PORT"]
CMD ["python", "-m", "trainer_service"]
