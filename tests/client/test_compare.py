"""``tin compare``'s table: the settings that differ, and each run's scores, time and pace."""

from __future__ import annotations

from tin_client.compare import comparison, differing_settings, plot_val_curves


def run(run_id: str, **request) -> dict:
    base = {"dataset": "syn", "epochs": 3, "learning_rate": 0.1, "tags": [], "name": None}
    return {"id": run_id, "state": "succeeded", "request": {**base, **request},
            "training": {"epochs": 3}}  # fmt: skip


HISTORY_A = [
    {"epoch": 1, "val_accuracy": 0.2, "val_top5_accuracy": 0.5, "epoch_time_s": 30.0,
     "images_per_s": 100.0},
    {"epoch": 2, "val_accuracy": 0.4, "val_top5_accuracy": 0.7, "epoch_time_s": 30.0,
     "images_per_s": 110.0},
    {"epoch": 3, "val_accuracy": 0.35, "val_top5_accuracy": 0.72, "epoch_time_s": 30.0,
     "images_per_s": 120.0},
]  # fmt: skip


def test_only_the_settings_that_differ_are_columns():
    runs = [run("a", learning_rate=0.1, name="first", tags=["x"]), run("b", learning_rate=0.2),
            run("c", learning_rate=0.2, flip=False)]  # fmt: skip
    assert differing_settings(runs) == ["learning_rate", "flip"]


def test_each_run_has_its_best_and_last_scores_time_and_pace(tmp_path):
    runs = [run("a", name="first"), run("b", learning_rate=0.2)]
    rows = comparison(runs, [HISTORY_A, HISTORY_A[:1]])
    assert rows[0] == {
        "id": "a", "name": "first", "learning_rate": 0.1, "state": "succeeded", "epochs": "3/3",
        "best_epoch": 2, "best_val_accuracy": 0.4, "best_val_top5_accuracy": 0.7,
        "last_val_accuracy": 0.35, "last_val_top5_accuracy": 0.72, "train_minutes": 1.5,
        "images_per_s": 110.0,
    }  # fmt: skip
    assert rows[1]["epochs"] == "1/3" and rows[1]["best_epoch"] == 1 and rows[1]["name"] == ""
    path = tmp_path / "curves.png"
    plot_val_curves(path, runs, [HISTORY_A, HISTORY_A[:1]])
    assert path.read_bytes()[:4] == b"\x89PNG"
