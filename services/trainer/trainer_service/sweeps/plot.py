"""The sweep's plot, ``plot.png`` in its folder: each trial's value and the best so far (left),
and which fields mattered (right: Optuna's PED-ANOVA importances, which need no library beyond
NumPy, once two trials have completed)."""

from __future__ import annotations

import warnings
from pathlib import Path

import optuna
from optuna.trial import TrialState

from datavolume.files import replacing
from trainer_service.sweeps.spec import SweepRequest


def importances(study: optuna.Study) -> dict[str, float]:
    """Each field's share of what decided the value (empty until two trials completed)."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(complete) < 2:
        return {}
    try:
        with warnings.catch_warnings():  # e.g. "importances will be equal": the plot says so
            warnings.simplefilter("ignore")
            evaluator = optuna.importance.PedAnovaImportanceEvaluator()
            return optuna.importance.get_param_importances(study, evaluator=evaluator)
    except (RuntimeError, ValueError):  # e.g. every trial took the same values
        return {}


def draw(study: optuna.Study, spec: SweepRequest, path: Path) -> None:
    """Write the plot to ``path`` (temp file, then rename)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    trials = study.get_trials(deepcopy=False)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    best, line = None, []
    better = max if spec.direction == "maximize" else min
    for trial in trials:
        if trial.state == TrialState.COMPLETE:
            best = trial.value if best is None else better(best, trial.value)
        line.append(best)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    pruned = [t for t in trials if t.state == TrialState.PRUNED and t.intermediate_values]
    left.scatter([t.number for t in complete], [t.value for t in complete], label="completed")
    left.scatter(
        [t.number for t in pruned],
        [t.intermediate_values[max(t.intermediate_values)] for t in pruned],
        marker="x",
        label="pruned (last)",
    )
    left.step([t.number for t in trials], line, where="post", color="k", label="best so far")
    left.set(xlabel="trial", ylabel=spec.metric, title=f"sweep {spec.name}: {spec.direction}")
    left.legend(loc="best", fontsize="small")
    shares = importances(study)
    if shares:
        names = list(shares)[::-1]
        right.barh(names, [shares[n] for n in names])
        right.set(xlabel="importance (PED-ANOVA)", title="which fields mattered")
    else:
        right.text(0.5, 0.5, "importances after two completed trials", ha="center")
        right.set_axis_off()
    fig.tight_layout()
    with replacing(path, ".png") as temp:
        fig.savefig(temp, dpi=90)
    plt.close(fig)
