"""Early stopping, the training-time limit and the time budget: the rules on their own (a fake
model and clock), then in real runs, which end succeeded, with a checkpoint, and say why."""

from __future__ import annotations

import json
import threading
import time
from types import SimpleNamespace

import pytest

from datavolume.runs import RunFolder
from jobkit.context import LocalContext
from tests.trainer.support import run_to_end, tiny_config
from trainer_service.engine import train as engine
from trainer_service.engine.stopping import (
    EARLY_STOPPING,
    MAX_RUNTIME,
    PRUNED,
    BudgetPlan,
    StoppingRules,
    TrialGate,
    plan_epochs,
    read_plan,
)
from trainer_service.engine.train import schedule_for
from trainer_service.runs import trial


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def rules_for(history=(), steps=10, **fields) -> tuple[StoppingRules, Clock]:
    clock = Clock()
    rules = StoppingRules(tiny_config(**fields), list(history), steps, clock)
    rules.set_model(SimpleNamespace(stop_training=False, stop_evaluating=False))
    rules.on_train_begin()
    return rules, clock


def epochs_until_stop(rules: StoppingRules, scores: list[float], key: str) -> int | None:
    for epoch, score in enumerate(scores):
        rules.on_epoch_end(epoch, {key: score})
        if rules.model.stop_training:
            return epoch + 1
    return None


def test_early_stopping_waits_patience_epochs_without_improvement():
    rules, _ = rules_for(early_stopping={"patience": 2})
    assert epochs_until_stop(rules, [0.1, 0.3, 0.2, 0.3, 0.5], "val_accuracy") == 4
    assert rules.reason == EARLY_STOPPING


def test_early_stopping_on_the_loss_and_with_a_minimum_change():
    rules, _ = rules_for(early_stopping={"monitor": "val_loss", "patience": 1})
    assert epochs_until_stop(rules, [2.0, 1.5, 1.6], "val_loss") == 3
    rules, _ = rules_for(early_stopping={"patience": 2, "min_delta": 0.05})
    # 0.54 and 0.53 do not beat the best (0.50) by more than 0.05
    assert epochs_until_stop(rules, [0.50, 0.54, 0.53, 0.70], "val_accuracy") == 3


def test_a_resumed_run_counts_the_epochs_it_already_waited():
    history = [{"epoch": 1, "val_accuracy": 0.6, "epoch_time_s": 5.0},
               {"epoch": 2, "val_accuracy": 0.5, "epoch_time_s": 5.0}]  # fmt: skip
    rules, _ = rules_for(history, early_stopping={"patience": 2})
    assert epochs_until_stop(rules, [0.55], "val_accuracy") == 1
    assert rules.trained_s == 10.0


def test_the_time_limit_stops_at_the_next_batch_and_counts_earlier_epochs():
    history = [{"epoch": 1, "epoch_time_s": 50.0}]
    rules, clock = rules_for(history, steps=10, max_runtime_min=1.0)
    clock.now += 9.0
    rules.on_train_batch_end(3)
    assert not rules.model.stop_training
    clock.now += 1.0  # 50 s before + 10 s now: the limit
    rules.on_train_batch_end(4)
    assert rules.model.stop_training and rules.reason == MAX_RUNTIME and rules.mid_epoch
    rules.on_test_batch_end(0)
    assert rules.model.stop_evaluating  # the epoch cut short is not validated


def test_a_limit_passed_while_validating_stops_after_that_epoch():
    rules, clock = rules_for(steps=10, max_runtime_min=1.0)
    rules.on_train_batch_end(9)
    clock.now += 61.0
    rules.on_epoch_end(0, {"val_accuracy": 0.5})
    assert rules.model.stop_training and rules.reason == MAX_RUNTIME and not rules.mid_epoch


def gate_for(run: RunFolder, steps: int = 4, wait_s: float = 5.0) -> TrialGate:
    link = trial.TrialLink("s", 0, "val_accuracy", wait_s)
    gate = TrialGate(run, link, steps)
    gate.set_model(SimpleNamespace(stop_training=False))
    return gate


def play_epoch(gate: TrialGate, epoch: int, logs: dict, batches: int = 4) -> None:
    gate.on_epoch_begin(epoch)
    for batch in range(batches):
        gate.on_train_batch_end(batch)
    gate.on_epoch_end(epoch, logs)


def test_a_trial_reports_each_epoch_and_stops_at_its_end_when_pruned(tmp_path):
    run = RunFolder(tmp_path)
    gate = gate_for(run)
    answers = iter([False, True])

    def sweep():  # the service's side: a verdict on each report
        for epoch in (1, 2):
            while (report := trial.read_report(run)) is None or report[0] != epoch:
                time.sleep(0.01)
            trial.give_verdict(run, epoch, next(answers))

    answering = threading.Thread(target=sweep)
    answering.start()
    play_epoch(gate, 0, {"val_accuracy": 0.4})
    assert trial.read_report(run) == (1, 0.4) and not gate.model.stop_training
    play_epoch(gate, 1, {"val_accuracy": 0.3})
    answering.join()
    assert trial.read_report(run) == (2, 0.3)
    assert gate.model.stop_training and gate.reason == PRUNED


def test_a_trial_goes_on_without_a_verdict_and_reports_no_epoch_cut_short(tmp_path):
    run = RunFolder(tmp_path)
    gate = gate_for(run, wait_s=0.2)
    started = time.monotonic()
    play_epoch(gate, 0, {"val_accuracy": 0.4})  # nobody answers: it waits, then goes on
    assert 0.2 <= time.monotonic() - started < 5 and not gate.model.stop_training
    play_epoch(gate, 1, {"val_accuracy": 0.9}, batches=2)  # stopped mid-epoch: not reported
    assert trial.read_report(run) == (1, 0.4) and gate.reason is None


def test_the_budget_plan(tmp_path):
    run = RunFolder(tmp_path)
    config = tiny_config(epochs=40, time_budget_min=10.0, decay_epochs=[20, 30],
                         warmup_epochs=5.0)  # fmt: skip
    plan = plan_epochs(run, config, first_epoch_s=45.0)  # 600 s / 45 s: 13 epochs fit
    assert plan == BudgetPlan(10.0, 45.0, 13) and read_plan(run) == plan
    planned = plan.apply(config)
    assert planned.epochs == 13 and planned.decay_epochs == [6, 10] and planned.warmup_epochs == 5
    assert plan_epochs(run, config, first_epoch_s=1.0).epochs == 40  # at most the epochs asked
    assert plan_epochs(run, config, first_epoch_s=9999.0).epochs == 1  # at least the one done


# -------------------------------------------------------------------------------- real runs


def train(run: RunFolder, data_root, **fields) -> dict:
    return run_to_end(tiny_config(**fields), run.root, data_root, LocalContext())


def test_early_stopping_ends_a_real_run_succeeded(tmp_path, data_root):
    run = RunFolder(tmp_path / "run")
    # No later epoch can beat the first by 2.0: the run stops after patience (1) more epoch.
    result = train(run, data_root, epochs=6, early_stopping={"patience": 1, "min_delta": 2.0})
    assert result["stopped_early"] == EARLY_STOPPING and result["stopped"] is False
    assert result["epochs_completed"] == 2
    assert [row["epoch"] for row in json.loads(run.history_json.read_text())] == [1, 2]
    assert result["evaluation"]["checkpoint"] == "best.keras"
    card = json.loads(run.card_json.read_text())
    assert card["results"]["stopped_early"] == EARLY_STOPPING
    assert "epochs completed: 2 (stopped early: early_stopping)" in run.card_markdown.read_text()


def test_the_time_limit_ends_a_real_run_with_a_checkpoint(tmp_path, data_root):
    run = RunFolder(tmp_path / "run")
    result = train(run, data_root, epochs=50, max_runtime_min=0.0001)  # 6 ms: the first batch
    assert result["stopped_early"] == MAX_RUNTIME and result["stopped"] is False
    assert result["epochs_completed"] == 0 and run.partial.is_file()
    assert result["evaluation"]["checkpoint"] == "model.keras" and run.model.is_file()


def test_a_tiny_budget_trains_one_epoch(tmp_path, data_root):
    run = RunFolder(tmp_path / "run")
    result = train(run, data_root, epochs=20, time_budget_min=0.0001)
    assert result["budget"]["epochs"] == 1 and result["epochs_completed"] == 1
    assert json.loads(run.budget.read_text())["epochs"] == 1
    assert json.loads(run.card_json.read_text())["results"]["budget"] == result["budget"]


def test_the_schedule_spans_the_budgeted_epochs_and_a_resume_keeps_the_plan(
    tmp_path, data_root, monkeypatch
):
    # The first epoch "took" 2/5 of the budget: 2 epochs fit out of the 10 asked.
    real = engine.plan_epochs
    monkeypatch.setattr(engine, "plan_epochs",
                        lambda run, config, first_epoch_s: real(run, config, 24.0))  # fmt: skip
    run = RunFolder(tmp_path / "run")
    fields = {"epochs": 10, "time_budget_min": 1.0, "schedule": "cosine", "learning_rate": 0.1}
    result = train(run, data_root, **fields)
    assert result["budget"] == {"budget_min": 1.0, "first_epoch_s": 24.0, "epochs": 2}
    rows = json.loads(run.history_json.read_text())
    assert [row["epoch"] for row in rows] == [1, 2]
    planned = schedule_for(tiny_config(**{**fields, "epochs": 2}), 16)
    unplanned = schedule_for(tiny_config(**fields), 16)
    # epoch 2 ran on the cosine over 2 epochs (the row holds the rate at its first step)
    assert rows[1]["learning_rate"] == pytest.approx(float(planned(16)), rel=1e-5)
    assert abs(float(unplanned(16)) - float(planned(16))) > 0.01
    assert json.loads(run.config.read_text())["epochs"] == 10  # the request, as it was asked

    again = train(run, data_root, **fields)  # a resume: nothing left to train in the plan
    assert again["budget"]["epochs"] == 2 and again["epochs_completed"] == 2


def test_a_real_time_budget_is_honoured_within_one_epoch(tmp_path, data_root):
    # No stand-ins: the first epoch's real pace sets the plan, and the training time (every
    # epoch, validation included) ends within the budget plus at most one epoch.
    run = RunFolder(tmp_path / "run")
    budget_s = 12.0
    result = train(run, data_root, epochs=200, time_budget_min=budget_s / 60)
    rows = json.loads(run.history_json.read_text())
    planned = result["budget"]["epochs"]
    assert 1 <= planned < 200 and [row["epoch"] for row in rows] == list(range(1, planned + 1))
    spent = sum(row["epoch_time_s"] for row in rows)
    assert spent <= budget_s + max(row["epoch_time_s"] for row in rows), (spent, rows)
