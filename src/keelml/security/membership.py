"""Privacy risk of a trained model: a membership-inference audit and attribute-inference checks.

Membership: the loss-threshold attack (Yeom et al., 2018). Training rows ("members") tend to have
a lower loss than unseen rows; the attack scores each row by its negative loss and the audit
reports how well that score separates a sample of the training split from an equally large sample
of the held-out test split: ROC AUC (0.5 = nothing leaks) and the true-positive rate at a 1%
false-positive rate (how many members an attacker finds while rarely accusing a non-member).

Attribute inference: for each sensitive column, a small classifier tries to recover the column's
value from the model's output scores alone (cross-validated balanced accuracy), compared with the
majority-class baseline. Outputs that reveal a sensitive attribute show up as a positive advantage.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import pandas as pd

# Imported here, not in the functions: any native thread pool these load must be present when
# the step applies its thread limit (threadpoolctl only limits libraries already loaded).
from sklearn.dummy import DummyClassifier
from sklearn.metrics import balanced_accuracy_score, roc_auc_score, roc_curve
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.tree import DecisionTreeClassifier

from keelml.engine.executors import Executor, InProcess, run_all
from keelml.model.features import to_labelled_xy, to_xy

if TYPE_CHECKING:
    import polars as pl

    from keelml.data.contract import Contract

FloatArray = npt.NDArray[np.float64]
ATTRIBUTE_FOLDS = 5
ATTRIBUTE_BINS = 4  # numeric sensitive columns are cut into this many quantile bins
MIN_CLASS_ROWS = ATTRIBUTE_FOLDS  # rarer sensitive values are merged into "(other)"
MIN_AUDIT_ROWS = 10  # fewer members or non-members than this: the audit is skipped, with a note


def sample_rows(frame: pl.DataFrame, n: int, seed: int) -> pl.DataFrame:
    """At most n rows of the frame, drawn without replacement with a fixed seed."""
    if frame.height <= n:
        return frame
    return frame.sample(n=n, seed=seed, shuffle=True)


def model_outputs(model: Any, X: pd.DataFrame, task: str) -> FloatArray:
    """What a caller of the model sees: class probabilities (n, k), or predictions (n, 1) for regression."""
    if task == "regression":
        return np.asarray(model.predict(X), dtype=np.float64).reshape(-1, 1)
    return np.asarray(model.predict_proba(X), dtype=np.float64)


def row_losses(model: Any, outputs: FloatArray, y: npt.NDArray[Any], task: str) -> FloatArray:
    """Per-row loss: cross-entropy of the true class, or the squared residual for regression."""
    if task == "regression":
        return np.asarray((y.astype(np.float64) - outputs[:, 0]) ** 2, dtype=np.float64)
    classes = np.asarray([str(c) for c in model.classes_])
    index = {c: i for i, c in enumerate(classes)}
    known = np.array([str(v) in index for v in y])
    cols = np.array([index.get(str(v), 0) for v in y])
    eps = np.finfo(np.float64).eps
    picked = np.clip(outputs[np.arange(len(y)), cols], eps, 1.0)
    return np.where(known, -np.log(picked), np.inf)  # a class the model never saw: maximal loss


def tpr_at_fpr(labels: npt.NDArray[np.bool_], scores: FloatArray, fpr_limit: float) -> float:
    """The highest true-positive rate reachable with a false-positive rate at most fpr_limit."""
    fpr, tpr, _ = roc_curve(labels, scores)
    allowed = fpr <= fpr_limit + 1e-12
    return float(tpr[allowed].max()) if allowed.any() else 0.0


def membership_audit(model: Any, train: pl.DataFrame, test: pl.DataFrame, contract: Contract, *,
                     sample_size: int, seed: int, max_auc: float | None = None) -> dict[str, Any]:
    """The loss-threshold membership attack on balanced, seeded samples of members and non-members.

    Returns a JSON-ready dict: attack ROC AUC, TPR at 1% (and 0.1%) FPR, the best threshold's
    advantage (TPR - FPR), mean losses of both groups, sample sizes, and the verdict against max_auc.
    """
    n = min(train.height, test.height, sample_size)
    if n < MIN_AUDIT_ROWS:
        return {"skipped": f"too few rows to audit ({n}; at least {MIN_AUDIT_ROWS} in each split needed)",
                "auc": None, "members": n, "non_members": n, "max_auc": max_auc, "passed": None}
    members = sample_rows(train, n, seed)
    outsiders = sample_rows(test, n, seed + 1)
    losses = []
    for frame, what in ((members, "training"), (outsiders, "test")):
        X, y = to_labelled_xy(frame, contract, what=what)
        losses.append(row_losses(model, model_outputs(model, X, contract.task), y, contract.task))
    member_loss, outsider_loss = losses
    labels = np.r_[np.ones(n, dtype=bool), np.zeros(n, dtype=bool)]
    scores = -np.r_[member_loss, outsider_loss]
    scores = np.nan_to_num(scores, nan=-1e300, neginf=-1e300)
    auc = float(roc_auc_score(labels, scores))
    fpr, tpr, _ = roc_curve(labels, scores)
    report: dict[str, Any] = {
        "attack": "loss threshold" + (" (squared residual)" if contract.task == "regression" else " (cross-entropy)"),
        "auc": auc,
        "tpr_at_1pct_fpr": tpr_at_fpr(labels, scores, 0.01),
        "tpr_at_0_1pct_fpr": tpr_at_fpr(labels, scores, 0.001),
        "advantage": float(np.max(tpr - fpr)),
        "members": n,
        "non_members": n,
        "mean_loss_members": _finite_mean(member_loss),
        "mean_loss_non_members": _finite_mean(outsider_loss),
        "seed": seed,
        "max_auc": max_auc,
    }
    report["passed"] = None if max_auc is None else auc <= max_auc
    return report


def _finite_mean(values: FloatArray) -> float | None:
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else None


def sensitive_columns(contract: Contract) -> list[str]:
    """The contract's columns marked sensitive (the spec's data.sensitive_columns end up there)."""
    return [c.name for c in contract.columns if c.sensitive and c.role != "target"]


def _attribute_labels(values: pd.Series, numeric: bool) -> npt.NDArray[Any] | None:
    """The sensitive values as class labels (numeric ones binned), rare ones merged; None if < 2 classes."""
    present = values.dropna()
    if numeric:
        numbers = pd.to_numeric(present, errors="coerce").astype(float)
        edges = np.unique(np.quantile(numbers, np.linspace(0, 1, ATTRIBUTE_BINS + 1)))
        if len(edges) < 3:
            return None
        labels = np.asarray([f"bin {i}" for i in np.digitize(numbers, edges[1:-1])], dtype=object)
    else:
        labels = present.astype(str).to_numpy(dtype=object)
    kinds, counts = np.unique(labels, return_counts=True)
    rare = set(kinds[counts < MIN_CLASS_ROWS].tolist())
    if rare:
        labels = np.asarray(["(other)" if v in rare else v for v in labels], dtype=object)
    kinds, counts = np.unique(labels, return_counts=True)
    if len(kinds) < 2 or counts.min() < MIN_CLASS_ROWS:
        return None
    return labels


def attribute_inference(model: Any, rows: pl.DataFrame, contract: Contract, *, seed: int,
                        flag_advantage: float = 0.05) -> dict[str, Any]:
    """For each sensitive column: can the model's outputs predict its value better than a baseline?

    The attacker is a small decision tree (depth 4, balanced class weights) on the model's
    outputs (log-odds for binary tasks, log-probabilities for multiclass, the prediction for
    regression), scored by 5-fold cross-validated balanced accuracy; the baseline always predicts
    the majority value (balanced accuracy 1/k). A column is flagged when the advantage exceeds
    flag_advantage.
    """
    names = sensitive_columns(contract)
    results: dict[str, Any] = {}
    if not names:
        return {"columns": results, "flag_advantage": flag_advantage, "rows": rows.height}
    X, _ = to_xy(rows, contract)
    outputs = _attack_features(model_outputs(model, X, contract.task), contract.task)
    for name in names:
        if name not in rows.columns:
            results[name] = {"skipped": "column not present in the audited rows (dropped before storage?)"}
            continue
        column = contract.column(name)
        values = rows.get_column(name).to_pandas()
        keep = values.notna().to_numpy()
        labels = _attribute_labels(values, numeric=column.type in ("integer", "float"))
        if labels is None:
            results[name] = {"skipped": f"fewer than 2 values with at least {MIN_CLASS_ROWS} rows each"}
            continue
        feats = outputs[keep]
        folds = StratifiedKFold(n_splits=ATTRIBUTE_FOLDS, shuffle=True, random_state=seed)
        attacker = DecisionTreeClassifier(max_depth=4, min_samples_leaf=20, class_weight="balanced",
                                          random_state=seed)
        guessed = cross_val_predict(attacker, feats, labels, cv=folds)
        baseline_guess = cross_val_predict(DummyClassifier(strategy="most_frequent"), feats, labels, cv=folds)
        attack = float(balanced_accuracy_score(labels, guessed))
        baseline = float(balanced_accuracy_score(labels, baseline_guess))
        kinds, counts = np.unique(labels, return_counts=True)
        results[name] = {
            "attack_balanced_accuracy": attack,
            "baseline_balanced_accuracy": baseline,
            "advantage": attack - baseline,
            "flagged": attack - baseline > flag_advantage,
            "classes": len(kinds),
            "majority_share": float(counts.max() / counts.sum()),
            "rows": int(keep.sum()),
            "binned": column.type in ("integer", "float"),
        }
    return {"columns": results, "flag_advantage": flag_advantage, "rows": rows.height}


def _attack_features(outputs: FloatArray, task: str) -> FloatArray:
    """Model outputs as attack features: log-odds (binary), log-probabilities (multiclass), predictions."""
    if task == "regression":
        return outputs
    eps = 1e-12
    logp = np.log(np.clip(outputs, eps, 1.0))
    if task == "binary":
        return np.asarray((logp[:, 1] - np.log(np.clip(outputs[:, 0], eps, 1.0))).reshape(-1, 1))
    return np.asarray(logp)


def privacy_audit(model: Any, train: pl.DataFrame, test: pl.DataFrame, contract: Contract, *,
                  sample_size: int, seed: int, max_auc: float | None = None,
                  flag_advantage: float = 0.05, executor: Executor | None = None) -> dict[str, Any]:
    """The privacy step's report: the membership audit and attribute inference on the member sample.

    The two audits are two tasks on `executor` (default: this process) on the same seeded samples,
    so the report is the same on every executor.
    """
    n = min(train.height, test.height, sample_size)
    members = sample_rows(train, min(train.height, sample_size), seed)
    tasks = [("membership", sample_rows(train, n, seed), sample_rows(test, n, seed + 1),
              {"sample_size": n, "seed": seed, "max_auc": max_auc}),
             ("attributes", members, None, {"seed": seed, "flag_advantage": flag_advantage})]
    membership, attributes = run_all(executor or InProcess(), privacy_part, tasks, shared=(model, contract))
    return {"membership": membership, "attribute_inference": attributes}


def privacy_part(shared: tuple[Any, Contract], part: str, rows: pl.DataFrame, others: pl.DataFrame | None,
                 options: dict[str, Any]) -> dict[str, Any]:
    """One audit of the privacy step (an executor task); `shared` is (model, contract)."""
    model, contract = shared
    if part == "membership":
        assert others is not None
        return membership_audit(model, rows, others, contract, **options)
    return attribute_inference(model, rows, contract, **options)
