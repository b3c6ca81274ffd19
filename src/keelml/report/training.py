"""Report sections about training: cross-validation, tuning history and learning curves.

The train step's report (`cv`) always has the cross-validation scores; tuning and learning curves
appear only when training produced them (keys `tuning`, `learning_curve`, `iterations`), and the
page says "not run" otherwise. Lists of per-fold lists are averaged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from keelml.report.charts import PALETTE, Series, bar_chart, line_chart
from keelml.report.html import e, not_run, num, section, table


def _pick(data: Mapping[str, Any], *keys: str) -> Any:
    return next((data[k] for k in keys if data.get(k) is not None), None)


def _numbers(values: Any) -> list[float]:
    """A list of numbers; a list of lists (per fold) becomes the list of their means."""
    if not isinstance(values, Sequence) or isinstance(values, str):
        return []
    out = []
    for v in values:
        if isinstance(v, Sequence) and not isinstance(v, str):
            inner = [float(x) for x in v if isinstance(x, int | float)]
            out.append(sum(inner) / len(inner) if inner else float("nan"))
        elif isinstance(v, int | float) and not isinstance(v, bool):
            out.append(float(v))
        else:
            out.append(float("nan"))
    return out


def timings_line(timings: Mapping[str, Any]) -> str:
    """Wall time of training and tuning (the steps' `timings` outputs), or "" when there are none."""
    train, tune = timings.get("train") or {}, timings.get("tune") or {}
    parts = [f"{label} {num(train.get(key), 2)} s" for key, label in
             (("cv_seconds", "cross-validation"), ("cv_fit_seconds_mean", "mean fit per fold"),
              ("fit_seconds", "final fit"), ("monitoring_seconds", "monitoring")) if train.get(key) is not None]
    if tune.get("seconds") is not None:
        parts.append(f"tuning {num(tune['seconds'], 2)} s")
    return f"<p class='meta'>wall time: {', '.join(parts)}</p>" if parts else ""


def cv_section(cv: Mapping[str, Any], timings: Mapping[str, Any] | None = None) -> str:
    found = cv.get("cv")
    scores: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
    rows = [[e(m), num(x.get("mean")), num(x.get("std")), num(x.get("train_mean"))]
            for m, x in scores.items() if isinstance(x, Mapping)]
    body = [table(["metric", "validation mean", "std", "train mean"], rows, numeric={1, 2, 3}) if rows else
            not_run("Cross-validation")]
    name = str(cv.get("primary_metric") or next(iter(scores), ""))
    entry = scores.get(name)
    if isinstance(entry, Mapping) and entry.get("test"):
        test, train = _numbers(entry.get("test")), _numbers(entry.get("train"))
        folds = [f"fold {i + 1}" for i in range(len(test))]
        series: list[tuple[str, Sequence[float | None]]] = [("validation", test)]
        if len(train) == len(test):
            series.insert(0, ("train", train))
        low = min(v for _, vs in series for v in vs if v is not None)
        high = max(v for _, vs in series for v in vs if v is not None)
        pad = (high - low) * 0.5 or 0.01
        body.append(bar_chart(folds, series, label=f"{name} per fold", value_label=name,
                              value_range=(low - pad, high + pad / 5),
                              caption=f"{name} per fold: train and validation (axis starts at {low - pad:.3f})."))
    body.append(f"<p class='meta'>model family {e(cv.get('family'))}, {e(cv.get('folds'))} folds, "
                f"{e(cv.get('n_train'))} training rows; train-validation gap {num(cv.get('fit_gap'))}</p>")
    body.append(timings_line(timings or {}))
    return section("cross-validation", "Cross-validation on the training split", "".join(body))


def tuning_section(cv: Mapping[str, Any]) -> str:
    tuning = cv.get("tuning")
    if not isinstance(tuning, Mapping) or not tuning.get("trials"):
        return section("tuning", "Tuning history", not_run("Hyperparameter tuning"))
    trials = [t for t in tuning["trials"] if isinstance(t, Mapping)]
    direction = str(tuning.get("direction", "maximize"))
    metric = str(_pick(tuning, "metric", "objective") or cv.get("primary_metric") or "score")
    points = [(float(_pick(t, "number", "trial") or i), t) for i, t in enumerate(trials)]
    done = [(n, float(v), t) for n, t in points
            if isinstance(v := _pick(t, "value", "score", "mean"), int | float)]
    body = [f"<p>{len(trials)} trials ({len(done)} finished), objective {e(metric)} ({e(direction)}).</p>"]
    if done:
        pick = max if direction.startswith("max") else min
        best = [done[0][1]]
        for _, v, _ in done[1:]:
            best.append(pick(best[-1], v))
        notes = [f"trial {int(n)}: {v:.4f}" for n, v, _ in done]
        xs = [n for n, _, _ in done]
        body.append(line_chart([Series("trial", xs, [v for _, v, _ in done], PALETTE[0], markers=True, notes=notes),
                                Series("best so far", xs, best, PALETTE[1])],
                               label="tuning history", x_label="trial", y_label=metric,
                               caption=f"Cross-validated {metric} of each trial and the best so far."))
        ranked = sorted(done, key=lambda d: d[1], reverse=direction.startswith("max"))[:10]
        body.append(table(["trial", metric, "seconds", "parameters"],
                          [[e(int(n)), num(v), num(_pick(t, "duration_s", "seconds", "duration"), 2),
                            e(", ".join(f"{k}={p}" for k, p in (t.get("params") or {}).items()))]
                           for n, v, t in ranked], numeric={0, 1, 2}))
    pruned = sum(1 for t in trials if str(t.get("state", "")).lower() == "pruned")
    if pruned:
        body.append(f"<p class='muted'>{pruned} trial(s) pruned.</p>")
    return section("tuning", "Tuning history", "".join(body))


def learning_section(cv: Mapping[str, Any]) -> str:
    curve = cv.get("learning_curve")
    iterations = cv.get("iterations")
    if isinstance(curve, Mapping) and iterations is None:
        iterations = curve.get("iterations")
    body = []
    if isinstance(curve, Mapping):
        sizes = _numbers(_pick(curve, "train_sizes", "sizes"))
        train = _numbers(_pick(curve, "train_mean", "train_scores", "train"))
        valid = _numbers(_pick(curve, "validation_mean", "test_mean", "valid_scores", "validation", "test"))
        metric = str(_pick(curve, "metric") or cv.get("primary_metric") or "score")
        series = [Series(n, sizes, ys, c, markers=True) for n, ys, c in
                  (("train", train, PALETTE[0]), ("validation", valid, PALETTE[1])) if len(ys) == len(sizes)]
        if sizes and series:
            body.append(line_chart(series, label="learning curve", x_label="training rows", y_label=metric,
                                   caption=f"{metric} against training size: train and validation."))
        verdict = _pick(curve, "diagnosis", "verdict", "flag", "status")
        if verdict is not None:
            body.append(f"<p>Diagnosis: <b>{e(verdict)}</b></p>")
    if isinstance(iterations, Mapping):
        valid = _numbers(_pick(iterations, "validation", "valid", "test"))
        train = _numbers(_pick(iterations, "train"))
        lines = [Series(n, list(range(1, len(ys) + 1)), ys, c) for n, ys, c in
                 (("train", train, PALETTE[0]), ("validation", valid, PALETTE[1])) if ys]
        if lines:
            body.append(line_chart(lines, label="score per iteration", x_label="iteration",
                                   y_label=str(_pick(iterations, "metric") or "score"),
                                   caption="Boosting: score after each iteration."))
    return section("learning-curves", "Learning curves", "".join(body) or not_run("Learning curves"))
