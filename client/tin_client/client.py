"""Typed clients of the two services' HTTP APIs (``/v1/jobs``, ``/v1/datasets``, ``/v1/runs``).

    from tin_client import DatasetClient, TrainerClient

    with DatasetClient() as dataset:                     # http://127.0.0.1:8001, $API_TOKEN
        job = dataset.prepare("syn", {"kind": "synthetic", "classes": 10})
        job = dataset.wait(job["id"])                    # polls, honouring Retry-After
    with TrainerClient() as trainer:
        run = trainer.wait(trainer.train("syn", epochs=4, width="half")["id"])

Every method returns the service's JSON (dicts and lists as documented at ``/docs``); an error
answer raises :class:`~tin_client.errors.ApiError` carrying its problem-details body.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import httpx

from tin_client.errors import ApiError, retry_after_s

#: Where ``docker compose up`` publishes the services (its default ports, on loopback).
DEFAULT_DATASET_URL = "http://127.0.0.1:8001"
DEFAULT_TRAINER_URL = "http://127.0.0.1:8002"
DATASET_URL_ENV, TRAINER_URL_ENV, TOKEN_ENV = "TIN_DATASET_URL", "TIN_TRAINER_URL", "API_TOKEN"
#: Job states after which a job never changes again.
TERMINAL = frozenset({"succeeded", "failed", "cancelled", "interrupted"})
#: The states a sweep ends in.
SWEEP_ENDED = frozenset({"succeeded", "stopped", "failed"})
#: Poll interval when an answer carries no ``Retry-After``.
DEFAULT_POLL_S = 2.0
#: A predict call may wait for a checkpoint's first export (the service's own limit ends it).
PREDICT_TIMEOUT_S = 900.0
#: Images per predict request (the service's default ``predict_max_images``).
PREDICT_CHUNK = 16

Job = dict[str, Any]


class ServiceClient:
    """What both clients share: the base URL, the bearer token, errors and polling."""

    #: The collection of jobs under ``/v1`` (``jobs`` or ``runs``).
    resource: str = "jobs"
    url_env: str = ""
    default_url: str = ""

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.url = (url or os.environ.get(self.url_env) or self.default_url).rstrip("/")
        token = token if token is not None else os.environ.get(TOKEN_ENV) or None
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(
            base_url=self.url, headers=headers, timeout=timeout, transport=transport
        )
        self._sleep = sleep

    def close(self) -> None:
        self._http.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One call; raises :class:`ApiError` for any 4xx/5xx answer."""
        response = self._http.request(method, path, **kwargs)
        if response.is_error:
            raise ApiError.from_response(response)
        return response

    def _post(self, path: str, body: Any = None, idempotency_key: str | None = None) -> Any:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return self.request("POST", path, json=body, headers=headers).json()

    # ---- jobs (both services)
    def get(self, job_id: str) -> Job:
        return self.request("GET", f"/v1/{self.resource}/{job_id}").json()

    def list(
        self, state: str | None = None, limit: int | None = None, tag: str | None = None
    ) -> list[Job]:
        """Jobs newest first; ``state`` and ``tag`` (runs: one of their tags) filter them."""
        given = {"state": state, "limit": limit, "tag": tag}
        params = {k: v for k, v in given.items() if v is not None}
        return self.request("GET", f"/v1/{self.resource}", params=params).json()["items"]

    def cancel(self, job_id: str) -> Job:
        """Ask the job to stop (202 while it stops, 200 once stopped; 409 once finished)."""
        return self._post(f"/v1/{self.resource}/{job_id}/cancel")

    def logs(self, job_id: str, tail_bytes: int | None = None) -> str:
        params = {"tail_bytes": tail_bytes} if tail_bytes else {}
        return self.request("GET", f"/v1/{self.resource}/{job_id}/logs", params=params).text

    def watch(self, job_id: str, timeout: float | None = None) -> Iterator[Job]:
        """Yield the job at each poll until it is terminal (the last one yielded). Waits between
        polls as the answer's ``Retry-After`` says (else :data:`DEFAULT_POLL_S`)."""
        path = f"/v1/{self.resource}/{job_id}"
        yield from self._poll(path, TERMINAL, f"{self.resource} {job_id}", timeout)

    def _poll(
        self, path: str, ended: frozenset[str], what: str, timeout: float | None
    ) -> Iterator[dict[str, Any]]:
        """GET ``path`` until its ``state`` is in ``ended``, yielding each answer."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            response = self.request("GET", path)
            answer = response.json()
            yield answer
            if answer["state"] in ended:
                return
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"{what} still {answer['state']} after {timeout} s")
            delay = retry_after_s(response)
            self._sleep(DEFAULT_POLL_S if delay is None else delay)

    def wait(self, job_id: str, timeout: float | None = None) -> Job:
        """Poll until the job is terminal and return it (whatever its final state)."""
        *_, last = self.watch(job_id, timeout)
        return last

    def follow_logs(self, job_id: str, interval: float = 1.0) -> Iterator[str]:
        """Yield the log's new text as it grows, until the job is terminal."""
        seen = ""
        while True:
            done = self.get(job_id)["state"] in TERMINAL
            text = self.logs(job_id)
            new = _new_text(seen, text)
            if new:
                yield new
                seen = text
            if done:
                return
            self._sleep(interval)


def _new_text(seen: str, text: str) -> str:
    """What ``text`` (a tail of an append-only log) adds to ``seen`` (an earlier tail)."""
    if text.startswith(seen):
        return text[len(seen) :]
    anchor = seen[-512:]
    at = text.rfind(anchor) if anchor else -1
    return text[at + len(anchor) :] if at >= 0 else text


class DatasetClient(ServiceClient):
    """The dataset service: prepare jobs (``/v1/jobs``) and prepared datasets."""

    resource = "jobs"
    url_env = DATASET_URL_ENV
    default_url = DEFAULT_DATASET_URL

    def prepare(
        self,
        name: str,
        source: dict[str, Any],
        *,
        shards: dict[str, int] | None = None,
        idempotency_key: str | None = None,
        **options: Any,
    ) -> Job:
        """Start a prepare job (202); ``source`` is ``{"kind": "url"|"zip"|"folder"|"synthetic",
        ...}``. ``options``: other request fields (``shuffle_seed``, ``skip_bad_images``,
        ``image_folder``)."""
        body = {"name": name, "source": source, **options}
        if shards is not None:
            body["shards"] = shards
        return self._post("/v1/jobs", body, idempotency_key)

    def datasets(self) -> list[dict[str, Any]]:
        return self.request("GET", "/v1/datasets").json()["items"]

    def dataset(self, name: str) -> dict[str, Any]:
        return self.request("GET", f"/v1/datasets/{name}").json()


class TrainerClient(ServiceClient):
    """The trainer service: training runs (``/v1/runs``) and the model report."""

    resource = "runs"
    url_env = TRAINER_URL_ENV
    default_url = DEFAULT_TRAINER_URL

    def train(self, dataset: str, *, idempotency_key: str | None = None, **config: Any) -> Job:
        """Start a run (202); ``config``: the run's settings (``epochs``, ``width``, ...)."""
        return self._post("/v1/runs", {"dataset": dataset, **config}, idempotency_key)

    def resume(self, run_id: str, checkpoint: str | None = None) -> Job:
        body = {"checkpoint": checkpoint} if checkpoint else None
        return self._post(f"/v1/runs/{run_id}/resume", body)

    def history(self, run_id: str) -> list[dict[str, Any]]:
        return self.request("GET", f"/v1/runs/{run_id}/history").json()

    def history_csv(self, run_id: str) -> str:
        return self.request("GET", f"/v1/runs/{run_id}/history", params={"format": "csv"}).text

    def checkpoints(self, run_id: str) -> list[dict[str, Any]]:
        return self.request("GET", f"/v1/runs/{run_id}/checkpoints").json()

    def predict(
        self,
        run_id: str,
        images: Sequence[tuple[str, bytes]],
        checkpoint: str | None = None,
        *,
        busy_retries: int = 3,
    ) -> dict[str, Any]:
        """``POST /v1/runs/{id}/predict``: ``images`` as (file name, bytes) pairs; the answer
        has one item per image, in order, with its ``top`` classes or its ``error``. A 429 (the
        service's predict queue full) is retried ``busy_retries`` times after its Retry-After."""
        files = [("images", (name, data, "application/octet-stream")) for name, data in images]
        params = {"checkpoint": checkpoint} if checkpoint else {}
        for attempt in range(busy_retries + 1):
            try:
                return self.request(
                    "POST",
                    f"/v1/runs/{run_id}/predict",
                    files=files,
                    params=params,
                    timeout=PREDICT_TIMEOUT_S,
                ).json()
            except ApiError as exc:
                if exc.status != 429 or attempt == busy_retries:
                    raise
                self._sleep(exc.retry_after_s or DEFAULT_POLL_S)
        raise AssertionError("unreachable")

    def evaluation(self, run_id: str) -> dict[str, Any]:
        """``GET /v1/runs/{id}/evaluation``: val scores, per class too (404 until it ends)."""
        return self.request("GET", f"/v1/runs/{run_id}/evaluation").json()

    def recipes(self) -> dict[str, Any]:
        """``GET /v1/recipes``: ``{"default": name, "items": [{name, summary, values}]}``."""
        return self.request("GET", "/v1/recipes").json()

    # -- sweeps ---------------------------------------------------------------------------

    def sweep(self, name: str, dataset: str, space: dict[str, Any], **fields: Any) -> dict:
        """``POST /v1/sweeps`` (202): trials of ``fields["base"]`` over ``space``; ``fields``:
        any other field of the body (``metric``, ``sampler``, ``max_trials``, ...)."""
        return self._post("/v1/sweeps", {"name": name, "dataset": dataset, "space": space,
                                         **fields})  # fmt: skip

    def sweeps(self) -> list[dict[str, Any]]:
        return self.request("GET", "/v1/sweeps").json()["items"]

    def sweep_status(self, name: str) -> dict[str, Any]:
        """``GET /v1/sweeps/{name}``: its state, every trial and the best."""
        return self.request("GET", f"/v1/sweeps/{name}").json()

    def stop_sweep(self, name: str) -> dict[str, Any]:
        return self.request("POST", f"/v1/sweeps/{name}/stop").json()

    def sweep_plot(self, name: str) -> bytes:
        """The sweep's plot (PNG)."""
        return self.request("GET", f"/v1/sweeps/{name}/plot").content

    def watch_sweep(self, name: str, timeout: float | None = None) -> Iterator[dict[str, Any]]:
        """Yield the sweep's status until it ends, polling as its ``Retry-After`` says."""
        yield from self._poll(f"/v1/sweeps/{name}", SWEEP_ENDED, f"sweep {name}", timeout)

    def model_report(self, **params: Any) -> dict[str, Any]:
        """``GET /v1/model-report`` (``width``, ``levels`` as a list or "4,6,3,2", ...)."""
        if isinstance(params.get("levels"), list | tuple):
            params["levels"] = ",".join(str(n) for n in params["levels"])
        clean = {k: v for k, v in params.items() if v is not None}
        return self.request("GET", "/v1/model-report", params=clean).json()
