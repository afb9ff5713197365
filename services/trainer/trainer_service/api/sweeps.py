"""``/v1/sweeps``: start a sweep, follow it, stop it, see its plot.

A sweep is not a job of this service's store: its state is its Optuna study, which every trainer
service sharing the volume (or the database) sees, and its trials are runs of those services
(:mod:`trainer_service.sweeps`). The name is the sweep's key: posting the same body under the
same name again answers the sweep already there (202), another body under that name is a 409.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.responses import FileResponse, JSONResponse

from datavolume.files import atomic_write_json, read_json
from jobkit.problems import PROBLEM_JSON, ProblemError, invalid_fields, problem_type
from jobkit.service import SettingsDep
from trainer_service.sweeps import study as studies
from trainer_service.sweeps.controller import SweepController, read_spec, sweep_names
from trainer_service.sweeps.spec import SWEEP_NAME_PATTERN, SweepRequest, check_sweep
from trainer_service.sweeps.status import (
    SweepList,
    SweepPublic,
    sweep_public,
    sweep_summary,
)

PREFIX = "/v1/sweeps"
RETRY_AFTER_S = 5
_PROBLEM = {"content": {PROBLEM_JSON: {}}, "description": "Problem details (RFC 9457)"}
SweepName = Annotated[str, Path(pattern=SWEEP_NAME_PATTERN, description="The sweep's name.")]

router = APIRouter(prefix=PREFIX, tags=["sweeps"])


def controller(request: Request) -> SweepController:
    return request.app.state.sweeps


def _answer(public: SweepPublic, status_code: int = 200, **headers: str) -> JSONResponse:
    if public.state in ("running", "stopping"):
        headers.setdefault("Retry-After", str(RETRY_AFTER_S))
    return JSONResponse(public.model_dump(mode="json"), status_code=status_code, headers=headers)


def _require(request: Request, name: str) -> SweepRequest:
    sweeps = controller(request)
    if name not in sweep_names(sweeps.settings):
        raise ProblemError(404, "Sweep not found", f"No sweep named {name!r}",
                           type_=problem_type("sweep-not-found"), sweep=name)  # fmt: skip
    return read_spec(sweeps.settings, name)


@router.post(
    "",
    status_code=202,
    response_model=SweepPublic,
    responses={409: {**_PROBLEM, "description": "Another sweep has this name"}},
    summary="Start a sweep: trials of a run body over a search space, chosen by Optuna",
)
def create_sweep(body: SweepRequest, request: Request, settings: SettingsDep) -> JSONResponse:
    sweeps = controller(request)
    folder = settings.volume.sweep(body.name)
    with studies.ask_lock(folder):  # one sweep of a name, whichever service is asked
        if folder.spec.is_file():
            existing = SweepRequest.model_validate(read_json(folder.spec))
            if existing != body:
                raise ProblemError(
                    409, "Sweep exists", f"a sweep named {body.name!r} exists with another "
                    "body; choose another name", type_=problem_type("sweep-exists"),
                    sweep=body.name,
                )  # fmt: skip
        else:
            if errors := check_sweep(body, settings.volume):
                raise invalid_fields(errors)
            sweeps.runner.admit()  # 429 or 507 now rather than failed trials later
            studies.create(body, sweeps.studies.storage(body.name))
            atomic_write_json(folder.spec, body.model_dump(mode="json"))  # last: it exists now
    sweeps.wake()
    public = sweep_public(settings, body, sweeps.studies.load(body))
    return _answer(public, 202, Location=f"{PREFIX}/{body.name}")


@router.get("", response_model=SweepList, summary="Sweeps, by name, with their best trials")
def list_sweeps(request: Request, settings: SettingsDep) -> SweepList:
    sweeps = controller(request)
    specs = [read_spec(settings, name) for name in sweep_names(settings)]
    return SweepList(items=[sweep_summary(s, sweeps.studies.load(s)) for s in specs])


@router.get(
    "/{name}",
    response_model=SweepPublic,
    responses={404: _PROBLEM},
    summary="A sweep: its state, every trial (values, state, run) and the best (poll)",
)
def get_sweep(name: SweepName, request: Request, settings: SettingsDep) -> JSONResponse:
    spec = _require(request, name)
    return _answer(sweep_public(settings, spec, controller(request).studies.load(spec)))


@router.post(
    "/{name}/stop",
    response_model=SweepPublic,
    responses={
        202: {"description": "Stopping: its running trials are cancelled"},
        404: _PROBLEM,
        409: {**_PROBLEM, "description": "The sweep has ended"},
    },
    summary="Stop a sweep: no new trials; the running ones are cancelled (a checkpoint saved)",
)
def stop_sweep(name: SweepName, request: Request, settings: SettingsDep) -> JSONResponse:
    spec = _require(request, name)
    sweeps = controller(request)
    study = sweeps.studies.load(spec)
    state = study.user_attrs.get(studies.STATE)
    if state not in ("running", "stopping"):
        raise ProblemError(409, "Sweep ended", f"sweep {name!r} is {state}",
                           type_=problem_type("sweep-ended"), sweep=name, state=state)  # fmt: skip
    study.set_user_attr(studies.STOP_REQUESTED, True)
    study.set_user_attr(studies.STATE, "stopping")
    sweeps.wake()
    public = sweep_public(settings, spec, sweeps.studies.load(spec))
    return _answer(public, 200 if public.state == "stopped" else 202)


@router.get(
    "/{name}/plot",
    response_class=FileResponse,
    responses={200: {"content": {"image/png": {}}}, 404: _PROBLEM},
    summary="The sweep's plot: each trial's value, the best so far, which fields mattered",
)
def get_plot(name: SweepName, request: Request, settings: SettingsDep) -> FileResponse:
    _require(request, name)
    plot = settings.volume.sweep(name).plot
    if not plot.is_file():
        raise ProblemError(404, "No plot yet", f"sweep {name!r} has no finished trial yet",
                           type_=problem_type("no-plot"), sweep=name)  # fmt: skip
    return FileResponse(plot, media_type="image/png")
