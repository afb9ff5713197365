"""How the dataset service starts worker processes: the shard writers and the synthetic generator.

Always ``spawn``:

- never ``fork``: a prepare's process may hold threads (TensorFlow's, the TFDS import), and a
  child forked from a process with threads can deadlock on a lock some thread held;
- not ``forkserver``: its workers are children of the server, not of the job's process, and the
  writers watch their parent to exit when the job is killed (SIGKILL reaches only the job).

Spawning costs each worker an interpreter start and its imports (numpy, Pillow; never
TensorFlow): a fraction of a second, started ahead of the work (``writer.WriterPool``).
"""

from __future__ import annotations

import multiprocessing
from multiprocessing.context import SpawnContext


def worker_context() -> SpawnContext:
    """The multiprocessing context every pool of the dataset service uses (see above)."""
    return multiprocessing.get_context("spawn")
