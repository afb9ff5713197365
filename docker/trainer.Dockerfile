# Trainer service on the official TensorFlow GPU image (CUDA and cuDNN matching TensorFlow).
# Build from the repository root:
#   docker build -f docker/trainer.Dockerfile -t tiny-imagenet/trainer .
FROM tensorflow/tensorflow:2.21.0-gpu AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src

# Dependencies first, from the lock, so source edits do not invalidate this layer. They go to
# /opt/app (on PYTHONPATH), beside the image's own TensorFlow, which the lock leaves out.
COPY requirements/trainer.lock requirements/trainer.lock
RUN python3 -m pip install --no-deps --target /opt/app -r requirements/trainer.lock

COPY shared shared
COPY services/jobkit services/jobkit
COPY services/trainer services/trainer
RUN python3 -m pip install --no-deps --target /opt/app ./shared ./services/jobkit ./services/trainer


FROM tensorflow/tensorflow:2.21.0-gpu

ENV PYTHONPATH=/opt/app \
    PYTHONUNBUFFERED=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    KERAS_BACKEND=tensorflow \
    TRAINER_DATA_ROOT=/data \
    TRAINER_HOST=0.0.0.0 \
    TRAINER_PORT=8002
COPY --from=build /opt/app /opt/app
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
