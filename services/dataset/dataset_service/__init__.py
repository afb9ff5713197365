"""Dataset service: tiny-imagenet-200 archive -> sharded TFRecords on the shared volume.

Run it with ``python -m dataset_service`` (uvicorn on ``DATASET_HOST``:``DATASET_PORT``), or
call :func:`dataset_service.prepare.prepare` directly (no HTTP, no jobs).

Modules, in pipeline order:

- ``config``      Settings (``DATASET_*`` environment variables), ``worker_env()`` for workers
- ``models``      ``PrepareRequest`` (source by ``kind``: url, zip, folder, synthetic), responses
- ``paths``       volume layout, ``resolve_inside`` (client paths must stay in the data root)
- ``source``      download (streamed, MD5, size limit), safe zip extraction, synthetic trees
- ``layout``      validate the tree, list its classes and images
- ``reorganize``  ``val/images`` -> ``val/<wnid>/images`` (rename-based, crash-safe, idempotent)
- ``images``      RGB JPEG pass-through, re-encoding of grayscale/CMYK/PNG, bad-image detection
- ``writer``      shuffled plan, shards written by a process pool, verified resume
- ``tfds_meta``   TFDS metadata so ``tfds.builder_from_directory`` loads the shards
- ``prepare``     the pipeline (``prepare``) and the job function (``run_prepare``)
- ``datasets``    ready datasets on the volume
- ``api/``, ``main``  HTTP routes (thin) and the app with its job runner

Volume layout::

    <data_root>/raw/downloads/<file>        archives fetched by URL
    <data_root>/raw/extracted/<name>/       extracted or generated tree (+ .source.json marker)
    <data_root>/datasets/<name>/            shards, .write-state/, TFDS files, shard_format.json
    <data_root>/state/                      dataset-jobs.db, dataset-logs/<job>.log, locks/

HTTP: ``POST /v1/jobs`` (202 + Location), ``GET /v1/jobs``, ``GET /v1/jobs/{id}``,
``POST /v1/jobs/{id}/cancel``, ``GET /v1/jobs/{id}/logs``, ``GET /v1/datasets``,
``GET /v1/datasets/{name}``, ``GET /healthz``, ``GET /readyz``, ``/docs``.

Readiness: ``datasets/<name>/shard_format.json`` is written last and atomically; a folder
without it is not a dataset. It is deleted (with the TFDS files) just before shards are
written, so a dataset being rewritten, or whose rewrite failed, is never listed as ready.

Resume: a shard's final name appears only after the complete file is fsynced and renamed;
its sidecar ``.write-state/<shard>.json`` then records a key of what it was written from,
its record count, size and SHA-256. A re-run keeps shards whose sidecar key, size and hash
match and rewrites the rest; since records are serialized deterministically and the shuffle
is seeded, the result is byte-identical to an uninterrupted run. To resume an interrupted
job, post the same request again.
"""
