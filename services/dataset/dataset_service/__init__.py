"""Dataset service: tiny-imagenet-200 archive -> sharded TFRecords on the shared volume.

Run it with ``python -m dataset_service`` (uvicorn on ``DATASET_HOST``:``DATASET_PORT``), or
call :func:`dataset_service.prepare.prepare` directly (no HTTP, no jobs).

Modules (``tests/dataset`` mirrors them), in pipeline order:

- ``settings``     Settings (``DATASET_*`` environment variables) and the source limits
- ``models``       ``PrepareRequest`` (source by ``kind``: url, zip, folder, synthetic), responses
- ``source``       download (streamed, MD5, size limit), safe zip extraction, generated trees
- ``tree``         a tree on disk or a zip read in place, its central directory checked
- ``layout_names`` the archive's file and folder names; ``layout``: validate a tree, list it
- ``synthetic``    the generator of a synthetic tiny-imagenet-200 (``tiny-imagenet-synth``)
- ``reorganize``   ``val/images`` -> ``val/<wnid>/images`` (rename-based, crash-safe, idempotent)
- ``images``       RGB JPEG pass-through, re-encoding of grayscale/CMYK/PNG, bad-image detection
- ``writer``       shuffled plan, shards written by a process pool, verified resume
- ``processes``    how worker processes start; ``gcpause``: the collector paused in hot loops
- ``tfds_meta``    TFDS metadata so ``tfds.builder_from_directory`` loads the shards
- ``prepare``      the pipeline (``prepare``) and the job function (``run_prepare``)
- ``errors``       the readable errors a prepare fails with (and their job error types)
- ``datasets``     ready datasets as the API lists them
- ``api/``, ``main``  HTTP routes (thin) and the app with its job runner

Where it writes on the volume (``raw/``, ``datasets/``, ``state/dataset-*``), how a dataset is
opened and how a new version is published: :mod:`datavolume` (the one owner of the layout).

HTTP: ``POST /v1/jobs`` (202 + Location), ``GET /v1/jobs``, ``GET /v1/jobs/{id}``,
``POST /v1/jobs/{id}/cancel``, ``GET /v1/jobs/{id}/logs``, ``GET /v1/datasets``,
``GET /v1/datasets/{name}``, ``GET /healthz``, ``GET /readyz``, ``/docs``.

Readiness: a prepare writes a new version in ``datasets/.staging/<name>/`` and swaps the link
``datasets/<name>`` to it only when its ``shard_format.json`` is written (last, atomically):
while it runs, and if it fails, readers see the previous version, unchanged.

Resume: a shard's final name appears only after the complete file is fsynced and renamed;
its sidecar ``.write-state/<shard>.json`` then records a key of what it was written from,
its record count, size and SHA-256. A re-run keeps shards whose sidecar key, size and hash
match and rewrites the rest; since records are serialized deterministically and the shuffle
is seeded, the result is byte-identical to an uninterrupted run. To resume an interrupted
job, post the same request again.
"""
