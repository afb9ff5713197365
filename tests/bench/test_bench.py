"""The benchmark scripts' plumbing: statistics, tables, sections, child processes, arguments,
the homework baseline, the subset archives and the poller. No timing is asserted anywhere."""

import http.server
import json
import threading
import zipfile

import numpy as np
import pytest

from bench import api_load, input_pipeline, predict, run_all, sharding, train_step
from bench.common import (
    BENCHMARKS_MD,
    RunInfo,
    Stats,
    md_table,
    percentile,
    replace_section,
    run_child,
    section_names,
)
from bench.data import WorkData, ensure_fraction_zip, spec_for_scale
from dataset_service.layout import validate
from dataset_service.synthetic import SyntheticSpec, generate

INFO = RunInfo(command="python -m bench.run_all", repeats=2, machine="test box", date="today")


# --------------------------------------------------------------------------- common


def test_stats_and_percentile():
    s = Stats.of([3.0, 1.0, 2.0])
    assert (s.min, s.median, s.max) == (1.0, 2.0, 3.0)
    assert s.fmt(".1f") == "2.0 (1.0..3.0)"
    assert Stats.of([5]).fmt(".0f") == "5"
    with pytest.raises(ValueError):
        Stats.of([])
    assert percentile([1, 2, 3, 4, 5], 50) == 3
    assert percentile(list(range(101)), 99) == pytest.approx(99)


def test_md_table_and_header():
    table = md_table(["a", "b"], [["x|y", 1]])
    assert table.splitlines() == ["| a | b |", "| --- | ---: |", "| x\\|y | 1 |"]
    with pytest.raises(ValueError):
        md_table(["a", "b"], [[1]])
    header = INFO.header("a note")
    for fact in ("test box", "`python -m bench.run_all`", "today", "repeats: 2", "a note"):
        assert fact in header


def test_replace_section(tmp_path):
    md = tmp_path / "B.md"
    md.write_text("top\n<!-- bench:x:start -->\nold\n<!-- bench:x:end -->\nbottom\n")
    replace_section(md, "x", "new\ntable")
    assert md.read_text() == (
        "top\n<!-- bench:x:start -->\nnew\ntable\n<!-- bench:x:end -->\nbottom\n"
    )
    with pytest.raises(ValueError):
        replace_section(md, "missing", "text")
    assert section_names(md) == ["x"]


def test_benchmarks_md_has_every_section():
    names = set(section_names(BENCHMARKS_MD))
    assert {m.SECTION for m in run_all.BENCHES.values()} <= names
    assert "gpu-step" in names


def test_run_child_returns_the_result_and_memory(tmp_path):
    run = run_child("bench.common:machine", log_path=tmp_path / "child.log")
    assert run.result["cores"].isdigit()
    assert run.peak_proc_rss > 0 and run.peak_tree_rss > 0


# --------------------------------------------------------------------------- arguments


def test_run_all_arguments():
    args = run_all.build_parser().parse_args([])
    assert args.only == ("sharding", "input", "train", "api", "recipe-step", "recipes", "predict",
                         "sweeps")  # fmt: skip
    assert args.scale == 1.0 and args.repeats == 3
    assert args.fractions == (0.1, 0.25, 0.5, 1.0)
    assert args.widths == (32, 64)
    assert args.pollers == 50 and args.duration == 30 and args.poll_intervals == (1.0, 0.0)
    args = run_all.build_parser().parse_args(
        ["--only", "api,sharding", "--scale", "0.01", "--fractions", "1,0.5", "--widths", "8"]
    )
    assert args.only == ("sharding", "api")
    assert args.fractions == (0.5, 1.0) and args.widths == (8,)
    for bad in (["--only", "nope"], ["--fractions", "0"], ["--widths", "6"]):
        with pytest.raises(SystemExit):
            run_all.build_parser().parse_args(bad)


def test_spec_for_scale():
    assert spec_for_scale(1.0) == SyntheticSpec()
    small = spec_for_scale(0.01)
    assert (small.train_total, small.val_total, small.test_images) == (1000, 200, 100)
    with pytest.raises(ValueError):
        spec_for_scale(0)


# --------------------------------------------------------------------------- data


def test_fraction_zip_is_a_valid_subset(tmp_path):
    spec = SyntheticSpec(classes=3, train_per_class=4, val_per_class=2, test_images=4)
    data = WorkData(tmp_path, spec)
    generate(data.tree.parent, spec, processes=1)
    archive = ensure_fraction_zip(data, 0.5)
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(tmp_path / "out")
    layout = validate(tmp_path / "out" / "tiny-imagenet-200")
    counts = data.fraction_counts(0.5)
    assert sum(len(v) for v in layout.train.values()) == counts["train"] == 6
    assert len(layout.val) == counts["val"] == 3
    assert len(layout.test) == counts["test"] == 2


def test_homework_baseline_writes_float_records(tmp_path):
    import tensorflow as tf

    from bench.homework_baseline import write_homework_shards

    spec = SyntheticSpec(classes=2, train_per_class=5, val_per_class=1, test_images=1)
    tree = generate(tmp_path / "src", spec, processes=1)
    r = write_homework_shards(tree / "train", tmp_path / "out", batch_size=4, num_shards=3)
    assert r["images"] == 10 and r["shards"] == 3 and r["classes"] == 2
    assert r["bytes"] / r["images"] > 64 * 64 * 3 * 4  # the float32 tensor and a bit
    files = sorted(str(p) for p in (tmp_path / "out").iterdir())
    spec_ = {
        "image": tf.io.FixedLenFeature([], tf.string),
        "label": tf.io.FixedLenFeature([], tf.int64),
    }
    labels = []
    for raw in tf.data.TFRecordDataset(files):
        ex = tf.io.parse_single_example(raw, spec_)
        image = np.frombuffer(ex["image"].numpy(), np.float32).reshape(64, 64, 3)
        assert abs(image.mean()) < 1e-3 and abs(image.std() - 1) < 1e-2  # samplewise
        labels.append(int(ex["label"]))
    assert sorted(labels) == [0] * 5 + [1] * 5


# --------------------------------------------------------------------------- the poller


@pytest.fixture
def status_server():
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps({"state": "succeeded"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1/jobs/x"
    server.shutdown()
    server.server_close()


def test_poller_counts_answers_and_stops_on_a_terminal_job(status_server):
    r = api_load.child_poll(status_server, 3, 0.3, 0.05, False)
    assert r["ok"] > 0 and r["requests"] == r["ok"] and not r["errors"]
    assert r["p50_ms"] <= r["p99_ms"] <= r["max_ms"]
    r = api_load.child_poll(status_server, 3, 30.0, 0.0, True)
    assert r["job_finished_early"] and r["window_s"] < 30


def test_poller_only_polls_loopback():
    with pytest.raises(ValueError):
        api_load.child_poll("http://example.com/v1/jobs/x", 1, 0.1, 0.0, False)


# --------------------------------------------------------------------------- rendering


def _side(method, images, seconds, bytes_, rss):
    run = {"images": images, "seconds": seconds, "bytes": bytes_, "shards": 3, "processes": 2}
    return {**run, "peak_tree_rss": rss, "peak_proc_rss": rss / 2}


def _prepare(images, seconds, rss):
    phases = {"start": 0.1, "inspect": 1.0, "validate": 0.1, "reorganize": 0.2, "plan": 0.1}
    phases.update(write=seconds - 1.7, metadata=0.2)
    splits = {"train": {"records": images, "shards": 2, "bytes": images * 2000}}
    return {
        "images": images,
        "seconds": seconds,
        "phases": phases,
        "splits": splits,
        "processes": 2,
        "peak_tree_rss": rss,
        "peak_proc_rss": rss / 3,
    }


def _anchor(images, seconds, rss):
    phases = {"unzip": seconds / 3, "write": seconds * 2 / 3}
    return {"images": images, "seconds": seconds, "phases": phases}, rss


def test_sharding_render():
    data = WorkData(BENCHMARKS_MD.parent, spec_for_scale(0.01))
    anchor = [
        {**a, "peak_tree_rss": rss, "peak_proc_rss": rss / 2}
        for a, rss in (_anchor(1000, 20.0, 2e9), _anchor(1000, 25.0, 2e9))
    ]
    tmpfs = {
        sharding.PROJECT: [_prepare(1000, 8.0, 1e9), _prepare(1000, 10.0, 1e9)],
        sharding.ANCHOR: anchor,
        sharding.FOLDER: [_prepare(1000, 12.0, 1e9)] * 2,
    }
    results = {
        "anchor": {"tmpfs": tmpfs, "disk": {**tmpfs, sharding.FOLDER: []}},
        "side": {
            sharding.PROJECT: [_side("p", 1000, 1.0, 2e6, 3e8), _side("p", 1000, 1.2, 2e6, 3e8)],
            sharding.HOMEWORK: [_side("h", 1000, 5.0, 5e7, 2e8)] * 2,
        },
        "growth": {0.1: [_prepare(100, 2.0, 1e9)] * 2, 1.0: [_prepare(1000, 10.0, 1e9)] * 2},
    }
    text = sharding.render(data, results, INFO, 128)
    assert text.count("_Machine: test box") == 3  # above every table
    assert "- tmpfs: project / anchor per repeat 0.40, 0.40 (worst **0.40**)" in text
    assert text.count("image_folder: true") == 1  # measured on tmpfs only
    assert "| project | inspect | 1.00 (1.00..1.00) |" in text and "| anchor | unzip |" in text
    assert "**4.58x** the images/s" in text and "**25.00x** the bytes" in text
    assert "time **5.00x**, peak memory of all processes **1.00x**" in text


def test_input_and_train_and_api_render():
    data = WorkData(BENCHMARKS_MD.parent, spec_for_scale(0.01))
    run = {
        "setup_s": 0.1,
        "epochs": [{"seconds": 1.0, "images": 1000}, {"seconds": 0.5, "images": 1000}],
        "peak_tree_rss": 1e9,
    }
    runs = {m: [run] for m in input_pipeline.METHODS}
    slow = {**run, "epochs": [{"seconds": 4.0, "images": 1000}, {"seconds": 0.5, "images": 1000}]}
    runs[input_pipeline.KERAS_DEVICE] = [slow]
    text = input_pipeline.render(data, runs, INFO, 128, 2)
    assert "host (the same `preprocess_batch`): epoch 1 **1.00x**, cached epochs **1.00x**" in text
    assert "as the trainer runs it: epoch 1 **4.00x**, cached epochs **1.00x**" in text

    runtime = {
        "backend": "tensorflow",
        "device": "CPU",
        "dtype_policy": "float32",
        "jit_compile": False,
        "steps_per_execution": 1,
    }
    step = {"rates": [10.0, 12.0], "params": 1000, "runtime": runtime, "peak_tree_rss": 1e9}
    results = {
        "steps": {(32, train_step.MEMORY): step, (32, train_step.PIPELINE): step},
        "pipeline": [[1000.0, 5000.0], [1100.0, 5100.0]],
    }
    parser = run_all.build_parser()
    args = parser.parse_args(["--repeats", "2"])
    text = train_step.render(data, results, INFO, args)
    assert text.count("_Machine: test box") == 2 and "| 32 | 1,000 |" in text

    poll = {
        "window_s": 10.0,
        "requests": 500,
        "ok": 500,
        "p50_ms": 2.0,
        "p99_ms": 8.0,
        "max_ms": 12.0,
        "errors": {},
        "job_finished_early": False,
    }
    results = {1.0: [{api_load.BUSY: poll, api_load.IDLE: poll}]}
    text = api_load.render(data, results, INFO, args)
    assert "busy / idle p99 **1.00x**" in text and "| yes |" in text


def predict_repeat(one_ms: float, sixteen_ms: float, answered: int, refused: dict) -> dict:
    """One repeat of bench.predict's measure(): 4 requests of 1 image, 2 of 16, a 2 s load."""
    return {
        "seconds": {"1": [one_ms / 1000] * 4, "16": [sixteen_ms / 1000] * 2},
        "load": {"latencies": [0.05] * answered, "refused": refused, "window_s": 2.0},
    }


def test_predict_render():
    results = {
        "widths": {
            "half": {
                "http": [predict_repeat(20, 160, 100, {"429": 3}),
                         predict_repeat(22, 170, 120, {"503": 1})],
                "in-process": [predict_repeat(15, 150, 200, {}), predict_repeat(15, 150, 200, {})],
                "rss_one": [140 * 2**20, 150 * 2**20],
                "rss_max": [160 * 2**20, 160 * 2**20],
            }
        },
        "disturbance": {"alone": [100.0, 100.0], "beside": [90.0, 90.0], "predictions": [6, 6]},
        "settings": {"predict_threads": 2, "predict_nice": 19, "predict_max_batch": 32,
                     "predict_batch_wait_ms": 2.0},
    }  # fmt: skip
    args = run_all.build_parser().parse_args(
        ["--repeats", "2", "--predict-requests", "4", "--predict-duration", "2"]
    )
    assert args.predict_widths == ["half", "full"] and args.predict_clients == 8
    text = predict.render(results, INFO, args)
    assert "(2 threads, niceness 19, batches of up to 32 images, 2 ms batch wait)" in text
    assert ("| half | HTTP | 21.0 (20.0..22.0) / 21.0 (20.0..22.0) | 165.0 (160.0..170.0) / "
            "165.0 (160.0..170.0) | 55.0 (50.0..60.0) | 50.0 (50.0..50.0) / 50.0 (50.0..50.0) | "
            "1 / 3 / 0 |") in text  # fmt: skip
    assert "| half | in-process | 15.0 (15.0..15.0) / 15.0 (15.0..15.0) |" in text
    assert "| half | 1.40x | 1.10x | 0.55x |" in text
    assert "| half | 145 (140..150) | 160 (160..160) |" in text
    assert "| beside 1-image predictions back to back over HTTP (12 in all) | 90.0 (90.0..90.0) " \
           "| 0.90x |" in text  # fmt: skip


def test_a_standalone_benchmark_writes_its_section_and_names_its_command(tmp_path, capsys):
    import types

    from bench.common import run_standalone

    seen = {}
    module = types.SimpleNamespace(
        __doc__="a benchmark", __name__="__main__", SECTION="x",
        __spec__=types.SimpleNamespace(name="bench.something"), add_arguments=lambda p: None,
        run=lambda data, args, info: seen.setdefault("command", info.command) and "the table",
    )  # fmt: skip
    out = tmp_path / "B.md"
    out.write_text("<!-- bench:x:start -->\n<!-- bench:x:end -->\n")
    assert run_standalone(module, ["--output", str(out), "--repeats", "1"]) == 0
    assert seen["command"] == f"python -m bench.something --output {out} --repeats 1"
    assert "the table" in out.read_text() and "the table" in capsys.readouterr().out


def test_sweeps_render_says_whether_the_targets_are_met():
    from bench import sweeps

    def search(best: float, epochs: int, states: list[str]) -> dict:
        trials = [{"state": state} for state in states]
        return {"best": {"value": best, "params": {"learning_rate": 0.05, "crop_padding": 8}},
                "trials": trials, "epochs": epochs, "minutes": 12.0}  # fmt: skip

    def runs(*finals: float) -> list[dict]:
        return [{"final_val": v, "seconds": 70.0} for v in finals]

    args = run_all.build_parser().parse_args(["--seeds", "2"])
    found = {
        "sweeps": {"median": search(0.95, 240, ["complete"] * 6 + ["pruned"] * 10),
                   "none": search(0.96, 480, ["complete"] * 16)},
        "arms": {"the sweep's best": runs(0.93, 0.95), "fast": runs(0.6, 0.58),
                 sweeps.BEST_ALONE: runs(0.9, 0.92)},
    }  # fmt: skip
    text = sweeps.render(found, INFO, args)
    assert "94.0 % final val top-1 against 91.0 % for crops alone, for 50% of the epochs" in text
    assert "Targets (at or above crops alone, at most 60% of the epochs): met" in text
    assert (
        "| median pruner | 95.0 | learning_rate 0.05, crop_padding 8 | 6 / 10 | 240 | 50% |" in text
    )
    assert "| the sweep's best | 94.0 ± 1.4 | 93.0, 95.0 | +3.0 (seeds +3.0, +3.0) |" in text
    found["sweeps"]["median"]["epochs"] = 400
    assert "NOT met" in sweeps.render(found, INFO, args)
