"""``tin``: drive the dataset and trainer services from a terminal.

    tin prepare --synthetic --classes 10 --name syn --wait
    tin train syn --epochs 4 --width half --follow
    tin runs; tin history RUN_ID; tin logs RUN_ID --follow; tin cancel RUN_ID; tin resume RUN_ID
    tin predict RUN_ID photo.jpg photos/
    tin sweep create lr syn --space learning_rate=0.02:0.4:log --space crop_padding=0,4 --follow

Exit status: 0 on success; 1 when the job followed fails, is cancelled or interrupted (its reason
printed); 2 when a call is refused (the problem's title, detail and invalid fields printed) or a
service cannot be reached; 130 when Ctrl-C detaches from a job (the job keeps running).
"""

from __future__ import annotations

import csv
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.table import Table

from tin_client.client import (
    DATASET_URL_ENV,
    DEFAULT_DATASET_URL,
    DEFAULT_TRAINER_URL,
    PREDICT_CHUNK,
    TOKEN_ENV,
    TRAINER_URL_ENV,
    DatasetClient,
    ServiceClient,
    TrainerClient,
)
from tin_client.compare import comparison, plot_val_curves
from tin_client.errors import ApiError
from tin_client.render import show

app = typer.Typer(
    help="Prepare Tiny ImageNet shards and train the ResNet through the two services.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)
console = Console(highlight=False)
errors = Console(stderr=True, highlight=False, soft_wrap=True)


@dataclass
class Clients:
    dataset_url: str
    trainer_url: str
    token: str | None

    def dataset(self) -> DatasetClient:
        return DatasetClient(self.dataset_url, self.token or "")

    def trainer(self) -> TrainerClient:
        return TrainerClient(self.trainer_url, self.token or "")


class Exit(Exception):
    """Stop with this exit status after printing ``message`` to stderr."""

    def __init__(self, code: int, message: str = ""):
        super().__init__(message)
        self.code, self.message = code, message


@app.callback()
def _options(
    ctx: typer.Context,
    dataset_url: Annotated[
        str, typer.Option(envvar=DATASET_URL_ENV, help="Dataset service URL.")
    ] = DEFAULT_DATASET_URL,
    trainer_url: Annotated[
        str, typer.Option(envvar=TRAINER_URL_ENV, help="Trainer service URL.")
    ] = DEFAULT_TRAINER_URL,
    token: Annotated[
        str | None,
        typer.Option(envvar=TOKEN_ENV, help="Bearer token, when the services require one."),
    ] = None,
) -> None:
    ctx.obj = Clients(dataset_url, trainer_url, token or None)


def _clients(ctx: typer.Context) -> Clients:
    return ctx.obj


def _print_json(value: Any) -> None:
    console.print_json(json.dumps(value, default=str))


def _follow(client: ServiceClient, job_id: str) -> dict[str, Any]:
    """Show the job until it ends; exit 1 unless it succeeded. Ctrl-C detaches."""
    try:
        history = (lambda: client.history(job_id)) if isinstance(client, TrainerClient) else None
        job = show(client.watch(job_id), console, client.resource, history)
    except KeyboardInterrupt:
        raise Exit(
            130,
            f"detached from {job_id}; it goes on running. Reattach: tin status {job_id} --follow"
            f" (stop it: tin cancel {job_id})",
        ) from None
    if job["state"] != "succeeded":
        error = job.get("error") or {}
        reason = error.get("message") or "no reason given"
        kind = f" ({error['type']})" if error.get("type") else ""
        raise Exit(1, f"{job_id} {job['state']}{kind}: {reason}")
    return job


def _find(clients: Clients, job_id: str) -> tuple[ServiceClient, dict[str, Any]]:
    """The service that knows ``job_id`` (a run or a prepare job), and the job."""
    unreachable = []
    for client in (clients.trainer(), clients.dataset()):
        try:
            return client, client.get(job_id)
        except ApiError as exc:
            if exc.status != 404:
                raise
        except httpx.TransportError:
            unreachable.append(client.url)
        client.close()
    where = f" (could not reach {', '.join(unreachable)})" if unreachable else ""
    raise Exit(2, f"no run or prepare job {job_id!r}{where}")


def _table(rows: list[dict[str, Any]], columns: dict[str, Any]) -> None:
    """A plain table. Its first column (the ids people copy) is never cut; piped, no column is
    (the table is as wide as its cells, not the 80 columns of a pipe)."""
    cells = [[str(get(row)) for get in columns.values()] for row in rows]
    first = max([len(name) for name in columns][:1] + [len(c[0]) for c in cells])
    table = Table(box=None, pad_edge=False)
    for i, name in enumerate(columns):
        table.add_column(name, no_wrap=i == 0, min_width=first if i == 0 else None)
    for row in cells:
        table.add_row(*row)
    if console.is_terminal:
        console.print(table)
    else:
        Console(highlight=False, width=10_000).print(table)


# ---------------------------------------------------------------- dataset service


@app.command()
def prepare(
    ctx: typer.Context,
    name: Annotated[str, typer.Option(help="Dataset name (datasets/<name>/ on the volume).")],
    synthetic: Annotated[bool, typer.Option(help="Generate a synthetic archive.")] = False,
    zip_path: Annotated[
        str | None, typer.Option("--zip", help="A zip on the volume, relative to the data root.")
    ] = None,
    folder: Annotated[
        str | None, typer.Option(help="An extracted folder on the volume, relative to it.")
    ] = None,
    url: Annotated[
        str | None,
        typer.Option(help="Download the zip from this URL ('official' for the cs231n archive)."),
    ] = None,
    md5: Annotated[str | None, typer.Option(help="Expected MD5 of the zip.")] = None,
    classes: Annotated[int | None, typer.Option(help="Synthetic: classes.")] = None,
    train_per_class: Annotated[int | None, typer.Option(help="Synthetic: train images.")] = None,
    val_per_class: Annotated[int | None, typer.Option(help="Synthetic: val images.")] = None,
    test_images: Annotated[int | None, typer.Option(help="Synthetic: test images.")] = None,
    seed: Annotated[int | None, typer.Option(help="Synthetic: generator seed.")] = None,
    image_folder: Annotated[
        bool,
        typer.Option(
            help="Also extract the archive as a reorganized tree (train/<wnid>/images, "
            "val/<wnid>/images, test/images) for folder-per-class loaders."
        ),
    ] = False,
    wait: Annotated[bool, typer.Option(help="Follow the job with a progress bar.")] = False,
) -> None:
    """Start a prepare job: archive -> validated, labelled, sharded TFRecords."""
    chosen = [k for k, v in {"--synthetic": synthetic, "--zip": zip_path, "--folder": folder,
                             "--url": url}.items() if v]  # fmt: skip
    if len(chosen) != 1:
        raise Exit(2, "give exactly one source: --synthetic, --zip PATH, --folder PATH or --url")
    if synthetic:
        given = {"classes": classes, "train_per_class": train_per_class,
                 "val_per_class": val_per_class, "test_images": test_images,
                 "seed": seed}  # fmt: skip
        source: dict[str, Any] = {"kind": "synthetic"} | {
            k: v for k, v in given.items() if v is not None
        }
    elif zip_path:
        source = {"kind": "zip", "path": zip_path}
    elif folder:
        source = {"kind": "folder", "path": folder}
    else:
        source = {"kind": "url"} | ({} if url == "official" else {"url": url})
    if md5 and source["kind"] in ("zip", "url"):
        source["md5"] = md5
    options = {"image_folder": True} if image_folder else {}
    with _clients(ctx).dataset() as client:
        job = client.prepare(name, source, **options)
        console.print(f"prepare job {job['id']} {job['state']} (dataset {name})")
        if wait:
            _follow(client, job["id"])
            info = client.dataset(name)
            counts = ", ".join(f"{k} {v['num_records']}" for k, v in info["splits"].items())
            console.print(f"dataset {name} ready: {info['path']} ({counts} records)")
            tree = info["metadata"]["provenance"].get("image_folder")
            if tree:
                console.print(f"ImageFolder tree: {tree}")


@app.command()
def datasets(ctx: typer.Context) -> None:
    """List the prepared datasets."""
    with _clients(ctx).dataset() as client:
        rows = client.datasets()
    _table(
        rows,
        {
            "name": lambda d: d["name"],
            "classes": lambda d: d["num_classes"],
            "splits": lambda d: " ".join(f"{k}={v['num_records']}" for k, v in d["splits"].items()),
            "source": lambda d: d["source_kind"],
            "created": lambda d: d["created_at"][:19],
        },
    )


@app.command()
def jobs(ctx: typer.Context) -> None:
    """List the dataset service's prepare jobs, newest first."""
    with _clients(ctx).dataset() as client:
        rows = client.list()
    _table(
        rows,
        {
            "id": lambda j: j["id"],
            "state": lambda j: j["state"],
            "phase": lambda j: j.get("phase") or "",
            "dataset": lambda j: j["request"].get("name", ""),
            "created": lambda j: j["created_at"][:19],
        },
    )


# ---------------------------------------------------------------- trainer service


def _parse_setting(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise Exit(2, f"--set takes KEY=VALUE, not {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


@app.command()
def train(
    ctx: typer.Context,
    dataset: Annotated[str, typer.Argument(help="A prepared dataset's name.")],
    recipe: Annotated[
        str | None, typer.Option(help="A training recipe (tin recipes): homework or fast.")
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="Epochs to train.")] = None,
    width: Annotated[str | None, typer.Option(help="full, half or a multiple of 4.")] = None,
    levels: Annotated[str | None, typer.Option(help="Bottlenecks per level, e.g. 4,6,3,2.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Global batch size.")] = None,
    learning_rate: Annotated[float | None, typer.Option(help="Peak learning rate.")] = None,
    schedule: Annotated[str | None, typer.Option(help="step, cosine, linear or constant.")] = None,
    optimizer: Annotated[str | None, typer.Option(help="sgd or adam.")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed.")] = None,
    name: Annotated[str | None, typer.Option(help="A name for people.")] = None,
    tag: Annotated[
        list[str] | None, typer.Option("--tag", help="A label to find the run by (repeatable).")
    ] = None,
    settings: Annotated[
        list[str] | None,
        typer.Option("--set", help="Any other run setting: KEY=VALUE (VALUE as JSON if valid)."),
    ] = None,
    follow: Annotated[bool, typer.Option(help="Follow the run with progress bars.")] = False,
) -> None:
    """Start a training run on a prepared dataset."""
    config: dict[str, Any] = dict(_parse_setting(s) for s in settings or [])
    given = {"recipe": recipe, "epochs": epochs, "batch_size": batch_size,
             "learning_rate": learning_rate, "schedule": schedule, "optimizer": optimizer,
             "seed": seed, "name": name, "tags": tag}  # fmt: skip
    config |= {k: v for k, v in given.items() if v is not None}
    if width is not None:
        config["width"] = int(width) if width.isdigit() else width
    if levels is not None:
        config["levels"] = [int(n) for n in levels.split(",") if n.strip()]
    with _clients(ctx).trainer() as client:
        run = client.train(dataset, **config)
        console.print(f"run {run['id']} {run['state']} (dataset {dataset})")
        if follow:
            run = _follow(client, run["id"])
            console.print(f"run {run['id']} succeeded; folder {run.get('run_dir', '')}")


@app.command()
def runs(
    ctx: typer.Context,
    tag: Annotated[str | None, typer.Option(help="Only runs with this tag.")] = None,
    state: Annotated[str | None, typer.Option(help="Only runs in this state.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="At most this many.")] = 100,
) -> None:
    """List training runs, newest first."""
    with _clients(ctx).trainer() as client:
        rows = client.list(state=state, limit=limit, tag=tag)
    _table(
        rows,
        {
            "id": lambda r: r["id"],
            "name": lambda r: r["request"].get("name") or "",
            "tags": lambda r: ",".join(r["request"].get("tags") or []),
            "state": lambda r: r["state"],
            "dataset": lambda r: r["request"].get("dataset", ""),
            "epoch": lambda r: (
                f"{r['training'].get('completed_epochs', 0)}/"
                f"{r['training'].get('epochs') or r['request'].get('epochs', '?')}"
            ),
            "val_accuracy": lambda r: _fmt((r["training"].get("last_epoch") or {}), "val_accuracy"),
            "created": lambda r: r["created_at"][:19],
        },
    )


def _fmt(row: dict[str, Any], key: str) -> str:
    value = row.get(key)
    return f"{value:.3f}" if isinstance(value, int | float) else ""


@app.command()
def status(
    ctx: typer.Context,
    job_id: Annotated[str, typer.Argument(help="A run id or a prepare job id.")],
    follow: Annotated[bool, typer.Option(help="Follow it with progress bars.")] = False,
) -> None:
    """Show a run or a prepare job (JSON), or follow it."""
    client, job = _find(_clients(ctx), job_id)
    with client:
        if follow:
            _follow(client, job_id)
        else:
            _print_json(job)


@app.command()
def logs(
    ctx: typer.Context,
    job_id: Annotated[str, typer.Argument(help="A run id or a prepare job id.")],
    follow: Annotated[bool, typer.Option(help="Keep printing as the log grows.")] = False,
) -> None:
    """Print the tail of a job's log (or follow it until the job ends)."""
    client, _ = _find(_clients(ctx), job_id)
    with client:
        if not follow:
            console.out(client.logs(job_id), end="")
            return
        try:
            for text in client.follow_logs(job_id):
                console.out(text, end="")
        except KeyboardInterrupt:
            raise Exit(130, f"stopped following {job_id}; the job goes on") from None


@app.command()
def cancel(
    ctx: typer.Context, job_id: Annotated[str, typer.Argument(help="A run or prepare job id.")]
) -> None:
    """Stop a run (it saves a checkpoint first) or a prepare job."""
    client, _ = _find(_clients(ctx), job_id)
    with client:
        job = client.cancel(job_id)
    console.print(f"{job_id} {job['state']}" + (" (stopping)" if job["state"] == "running" else ""))


@app.command()
def resume(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument(help="An interrupted, cancelled or failed run.")],
    checkpoint: Annotated[
        str | None, typer.Option(help='"latest" (default), "best", an epoch or a file name.')
    ] = None,
    follow: Annotated[bool, typer.Option(help="Follow the run with progress bars.")] = False,
) -> None:
    """Resume a run from its latest (or a chosen) checkpoint."""
    with _clients(ctx).trainer() as client:
        run = client.resume(run_id, checkpoint)
        console.print(f"run {run_id} {run['state']} (resumed)")
        if follow:
            _follow(client, run_id)


@app.command()
def history(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument(help="A run id.")],
    csv: Annotated[bool, typer.Option("--csv", help="Print the CSV file as it is.")] = False,
) -> None:
    """Per-epoch history of a run: loss, top-1/top-5, val metrics, learning rate, time."""
    with _clients(ctx).trainer() as client:
        if csv:
            console.out(client.history_csv(run_id), end="")
            return
        rows = client.history(run_id)
    keys = ("loss", "accuracy", "top5_accuracy", "val_loss", "val_accuracy", "val_top5_accuracy")
    columns = {"epoch": lambda r: r["epoch"]} | {
        key: (lambda r, key=key: _fmt(r, key)) for key in keys
    }
    columns["learning_rate"] = lambda r: f"{r.get('learning_rate', 0):.3g}"
    _table(rows, columns)


@app.command()
def compare(
    ctx: typer.Context,
    run_ids: Annotated[list[str], typer.Argument(help="Two or more run ids.")],
    as_csv: Annotated[bool, typer.Option("--csv", help="Print CSV.")] = False,
    plot: Annotated[
        Path | None, typer.Option(help="Also draw their val top-1 curves into this PNG.")
    ] = None,
) -> None:
    """Runs side by side: the settings that differ, best and last val top-1/top-5, epochs,
    training time, images/s."""
    with _clients(ctx).trainer() as client:
        found = [client.get(run_id) for run_id in run_ids]
        histories = [client.history(run_id) for run_id in run_ids]
    rows = comparison(found, histories)
    if as_csv:
        writer = csv.DictWriter(sys.stdout, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    else:
        _table(rows, {key: (lambda r, key=key: _cell(r[key])) for key in rows[0]})
    if plot is not None:
        plot_val_curves(plot, found, histories)
        errors.print(f"wrote {plot}", markup=False)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return json.dumps(value) if isinstance(value, list | dict) else str(value)


@app.command()
def evaluation(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument(help="A finished run's id.")],
    worst: Annotated[int, typer.Option(min=1, help="Worst classes to list.")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="Print the whole answer.")] = False,
) -> None:
    """A run's val scores: top-1/top-5, its worst classes and the classes it confuses most."""
    with _clients(ctx).trainer() as client:
        answer = client.evaluation(run_id)
    if as_json:
        _print_json(answer)
        return
    flip = " (flip-averaged)" if answer.get("tta_flip") else ""
    console.print(
        f"{answer.get('checkpoint')} (epoch {answer.get('epoch')}){flip}: val top-1 "
        f"{answer['val_accuracy']:.2%}, top-5 {answer['val_top5_accuracy']:.2%}, "
        f"{answer['val_images']} images",
        markup=False,
    )
    classes = answer.get("classes") or {}
    console.print("worst classes:")
    _table(
        classes.get("worst", [])[:worst],
        {"top-1": lambda r: f"{r['top1']:.2%}", "images": lambda r: r["images"],
         "wnid": lambda r: r["wnid"], "words": lambda r: r["words"]},
    )  # fmt: skip
    console.print("most confused (true -> predicted):")
    _table(
        classes.get("confused_pairs", []),
        {"count": lambda p: p["count"], "share": lambda p: f"{p['share']:.0%}",
         "true": lambda p: f"{p['true']['wnid']} {p['true']['words']}",
         "predicted": lambda p: f"{p['predicted']['wnid']} {p['predicted']['words']}"},
    )  # fmt: skip


def _read_images(arguments: list[str]) -> list[tuple[str, bytes | str]]:
    """(name, bytes) per image argument: a file, each file of a folder (sorted, hidden ones
    left out), or "-" for standard input; (name, error message) for a path that cannot be
    read."""
    found: list[tuple[str, bytes | str]] = []
    for argument in arguments:
        if argument == "-":
            found.append(("stdin", sys.stdin.buffer.read()))
            continue
        path = Path(argument)
        paths = (
            sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
            if path.is_dir()
            else [path]
        )
        for item in paths:
            try:
                found.append((item.name, item.read_bytes()))
            except OSError as exc:
                found.append((str(item), exc.strerror or str(exc)))
    return found


@app.command()
def predict(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument(help="A run id (with --local: a run folder).")],
    images: Annotated[
        list[str], typer.Argument(help="Image files, folders (their files) or - (stdin).")
    ],
    checkpoint: Annotated[
        str | None,
        typer.Option(help='"best" (default), "latest", "final", an epoch or a file name.'),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the answers as JSON.")] = False,
    chunk: Annotated[
        int, typer.Option(min=1, help="Images per request (the service's limit: 16 by default).")
    ] = PREDICT_CHUNK,
    local: Annotated[
        bool,
        typer.Option(
            "--local",
            help="RUN_ID is a run folder on this machine: classify with the service's own code "
            "in one process here, no service (needs the trainer-service package beside tin).",
        ),
    ] = False,
) -> None:
    """Classify images with a run's checkpoint: the top-5 classes of each (wnid, words,
    probability). Any image format and size; exit 1 if some file could not be classified."""
    found = _read_images(images)
    if not found:
        raise Exit(2, "no image files given")
    # A path that could not be read is answered here; the others go in requests of ``chunk``.
    items = [{"image": name, "error": data} if isinstance(data, str) else None
             for name, data in found]  # fmt: skip
    todo = [i for i, item in enumerate(items) if item is None]
    answer: dict[str, Any] = {}
    if local and todo:
        from tin_client.local import LocalFailed, classify_locally

        try:
            answer = classify_locally(run_id, [found[i] for i in todo], checkpoint)
        except LocalFailed as exc:
            raise Exit(2, str(exc)) from None
        for i, item in zip(todo, answer["items"], strict=True):
            items[i] = item
    elif todo:
        with _clients(ctx).trainer() as client:
            for start in range(0, len(todo), chunk):
                batch = todo[start : start + chunk]
                answer = client.predict(run_id, [found[i] for i in batch], checkpoint)
                for i, item in zip(batch, answer["items"], strict=True):
                    items[i] = item
    if as_json:
        _print_json({**{k: v for k, v in answer.items() if k != "items"}, "items": items})
    else:
        for item in items:
            console.print(item["image"], markup=False)
            if item.get("error"):
                console.print(f"  error: {item['error']}", markup=False)
            for top in item.get("top") or []:
                console.print(
                    f"  {top['probability']:7.2%}  {top['wnid']}  {top['words']}", markup=False
                )
    if any(item.get("error") for item in items):
        raise Exit(1)


@app.command()
def recipes(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print the answer as JSON.")] = False,
) -> None:
    """The training recipes a run may name, and every value each one sets."""
    with _clients(ctx).trainer() as client:
        answer = client.recipes()
    if as_json:
        _print_json(answer)
        return
    items = answer["items"]
    table = Table(show_edge=False, pad_edge=False, box=None)
    table.add_column("field")
    for item in items:
        default = " (default)" if item["name"] == answer["default"] else ""
        table.add_column(f"{item['name']}{default}")
    for field in items[0]["values"]:
        cells = [json.dumps(item["values"][field]) for item in items]
        style = None if len(set(cells)) == 1 else "bold"
        table.add_row(field, *cells, style=style)
    console.print(table)
    for item in items:
        console.print(f"{item['name']}: {item['summary']}", soft_wrap=True)


@app.command()
def report(
    ctx: typer.Context,
    width: Annotated[str, typer.Option(help="full, half or a multiple of 4.")] = "full",
    levels: Annotated[str, typer.Option(help="Bottlenecks per level.")] = "4,6,3,2",
    classes: Annotated[int | None, typer.Option(help="Classes (default 200).")] = None,
) -> None:
    """Parameters and multiply-adds of a model shape (the trainer's model report)."""
    with _clients(ctx).trainer() as client:
        _print_json(client.model_report(width=width, levels=levels, classes=classes))


# ---------------------------------------------------------------- sweeps

sweep_app = typer.Typer(
    help="Sweeps: the best settings for a dataset, searched by Optuna, each trial a run.",
    no_args_is_help=True,
)
app.add_typer(sweep_app, name="sweep")


def _parse_dimension(text: str) -> tuple[str, dict[str, Any]]:
    """``learning_rate=0.02:0.4:log`` (a range), ``crop_padding=0,4,8`` (choices)."""
    key, sep, value = text.partition("=")
    if not sep or not key or not value:
        raise Exit(2, f"--space takes FIELD=LOW:HIGH[:log] or FIELD=A,B,..., not {text!r}")
    if ":" in value:
        parts = value.split(":")
        log = parts[2:] == ["log"]
        if len(parts) not in (2, 3) or (len(parts) == 3 and not log):
            raise Exit(2, f"--space {key}: a range is LOW:HIGH or LOW:HIGH:log, not {value!r}")
        low, high = (json.loads(part) for part in parts[:2])
        return key, {"low": low, "high": high, "log": log}
    return key, {"choices": [_parse_setting(f"x={choice}")[1] for choice in value.split(",")]}


def _trials_table(sweep: dict[str, Any]) -> Table:
    title = (f"sweep {sweep['name']}: {sweep['state']}, {sweep['counts']['finished']}/"
             f"{sweep['trials_wanted']} trials finished, {sweep['metric']} "
             f"({sweep['direction']}), {sweep['epochs']} epochs")  # fmt: skip
    table = Table(title=title, box=None, pad_edge=False, title_justify="left")
    for name in ("trial", "state", "value", "epochs", "run", "values"):
        table.add_column(name, no_wrap=name in ("trial", "run"))
    best = (sweep.get("best") or {}).get("number")
    for t in sweep["trials"]:
        value = "" if t["value"] is None else f"{t['value']:.4f}"
        shown = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                         for k, v in t["params"].items())  # fmt: skip
        style = "bold" if t["number"] == best else None
        table.add_row(str(t["number"]), t["state"], value, str(t["epochs"]), t["run_id"] or "",
                      shown, style=style)  # fmt: skip
    return table


def _show_sweep(client: TrainerClient, name: str, follow: bool) -> dict[str, Any]:
    """The trial table once, or live until the sweep ends (plain tables when piped)."""
    if not follow:
        sweep = client.sweep_status(name)
        console.print(_trials_table(sweep))
        return sweep
    try:
        if console.is_terminal:
            from rich.live import Live

            with Live(console=console, auto_refresh=False) as live:
                for sweep in client.watch_sweep(name):
                    live.update(_trials_table(sweep), refresh=True)
        else:
            seen = None
            for sweep in client.watch_sweep(name):
                key = (sweep["state"], [(t["state"], t["epochs"]) for t in sweep["trials"]])
                if key != seen:
                    console.print(_trials_table(sweep))
                    seen = key
    except KeyboardInterrupt:
        reattach = f"tin sweep status {name} --follow (stop it: tin sweep stop {name})"
        raise Exit(130, f"detached from sweep {name}; it goes on. Reattach: {reattach}") from None
    return sweep


def _sweep_outcome(sweep: dict[str, Any]) -> None:
    best = sweep.get("best")
    if best:
        which = f"trial {best['number']} (run {best['run_id']})"
        console.print(f"best: {which}, {sweep['metric']} {best['value']:.4f}: "
                      f"{json.dumps(best['params'])}")  # fmt: skip
    if sweep["state"] in ("failed", "stopped"):
        raise Exit(1, f"sweep {sweep['name']} {sweep['state']}: {sweep.get('reason') or ''}")


@sweep_app.command("create")
def sweep_create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The sweep's name (its runs: NAME-<trial>).")],
    dataset: Annotated[str, typer.Argument(help="A prepared dataset's name.")],
    space: Annotated[
        list[str] | None,
        typer.Option("--space", help="A field to vary: FIELD=LOW:HIGH[:log] or FIELD=A,B,..."),
    ] = None,
    recipe: Annotated[str | None, typer.Option(help="The trials' recipe.")] = None,
    settings: Annotated[
        list[str] | None,
        typer.Option("--set", help="Any other run setting of every trial: KEY=VALUE."),
    ] = None,
    metric: Annotated[
        str | None, typer.Option(help="val_top1 (default), val_top5, val_loss.")
    ] = None,
    sampler: Annotated[str | None, typer.Option(help="tpe (default), random or grid.")] = None,
    pruner: Annotated[str | None, typer.Option(help="median (default), hyperband, none.")] = None,
    prune_after_epochs: Annotated[int | None, typer.Option(help="Epochs before pruning.")] = None,
    max_trials: Annotated[int | None, typer.Option(help="Trials to finish (16).")] = None,
    max_concurrent: Annotated[int | None, typer.Option(help="Trials at once (1).")] = None,
    max_time_min: Annotated[float | None, typer.Option(help="No trial starts after.")] = None,
    seed: Annotated[int | None, typer.Option(help="The sampler's seed (0).")] = None,
    file: Annotated[
        Path | None, typer.Option(help="The body as JSON; the options given win over it.")
    ] = None,
    follow: Annotated[bool, typer.Option(help="Show its trials live until it ends.")] = False,
) -> None:
    """Start a sweep: trials of a run body over a search space, chosen and pruned by Optuna."""
    body: dict[str, Any] = json.loads(file.read_text()) if file else {}
    base = {**body.get("base", {}), **dict(_parse_setting(s) for s in settings or [])}
    if recipe:
        base["recipe"] = recipe
    given = {"metric": metric, "sampler": sampler, "pruner": pruner, "seed": seed,
             "prune_after_epochs": prune_after_epochs, "max_trials": max_trials,
             "max_concurrent": max_concurrent, "max_time_min": max_time_min}  # fmt: skip
    body |= {k: v for k, v in given.items() if v is not None}
    body |= {"base": base, "space": {**body.get("space", {}),
                                     **dict(_parse_dimension(d) for d in space or [])}}  # fmt: skip
    body.pop("name", None)
    body.pop("dataset", None)
    with _clients(ctx).trainer() as client:
        sweep = client.sweep(name, dataset, **body)
        console.print(f"sweep {sweep['name']} {sweep['state']}: {sweep['trials_wanted']} "
                      f"trials of {dataset}, {sweep['metric']} ({sweep['direction']})")  # fmt: skip
        if follow:
            _sweep_outcome(_show_sweep(client, name, follow=True))


@sweep_app.command("status")
def sweep_status(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="A sweep's name.")],
    follow: Annotated[bool, typer.Option(help="Show its trials live until it ends.")] = False,
    plot: Annotated[Path | None, typer.Option(help="Save its plot (PNG) to this file.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the status as JSON.")] = False,
) -> None:
    """A sweep's trials (values, state, epochs, runs) and its best."""
    with _clients(ctx).trainer() as client:
        if as_json:
            _print_json(client.sweep_status(name))
            return
        sweep = _show_sweep(client, name, follow)
        if plot is not None:
            plot.write_bytes(client.sweep_plot(name))
            console.print(f"plot: {plot}")
    if follow:
        _sweep_outcome(sweep)


@sweep_app.command("stop")
def sweep_stop(ctx: typer.Context, name: Annotated[str, typer.Argument(help="A sweep.")]) -> None:
    """Stop a sweep: no new trials, its running trials cancelled (a checkpoint saved)."""
    with _clients(ctx).trainer() as client:
        sweep = client.stop_sweep(name)
    console.print(f"sweep {name} {sweep['state']}")


@sweep_app.command("list")
def sweep_list(ctx: typer.Context) -> None:
    """The sweeps, with their best trials."""
    with _clients(ctx).trainer() as client:
        rows = client.sweeps()
    _table(rows, {
        "name": lambda r: r["name"],
        "state": lambda r: r["state"],
        "dataset": lambda r: r["dataset"],
        "trials": lambda r: f"{r['counts']['finished']}/{r['trials_wanted']}",
        "metric": lambda r: r["metric"],
        "best": lambda r: f"{r['best']['value']:.4f} (trial {r['best']['number']})"
        if r.get("best") else "",
        "created": lambda r: (r.get("created_at") or "")[:19],
    })  # fmt: skip


def main() -> None:
    """The console entry point: runs the app and turns errors into exit statuses."""
    try:
        app()  # click's own usage errors and --help exit from here
    except Exit as exc:
        if exc.message:
            errors.print(exc.message, markup=False)
        raise SystemExit(exc.code) from None
    except ApiError as exc:
        errors.print(f"error: {exc}", markup=False)
        if exc.invalid_fields:
            errors.print(f"invalid fields: {', '.join(exc.invalid_fields)}", markup=False)
        raise SystemExit(2) from None
    except httpx.TransportError as exc:
        errors.print(f"error: cannot reach {exc.request.url}: {exc}", markup=False)
        raise SystemExit(2) from None
