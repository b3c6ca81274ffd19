"""What happens when rules fire: a log line, a webhook, or retraining gated against the monitored version.

Each action runs once per monitoring run when at least one of the fired rules selects it (a rule's
``actions`` list, or every action when it has none). Its outcome (done, refused, failed, ...) is
reported and, when an audit log is available, recorded there.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from keelml.errors import KeelError
from keelml.monitor.webhook import WebhookRefused, post_json
from keelml.spec.monitor import ActionSpec
from keelml.store.atomic import open_private, private_dirs

Audit = Callable[..., Any]


@dataclass
class ActionContext:
    """Everything the actions need, passed in: paths, the monitored version and the side effects."""

    model: str
    version: int
    default_log: Path
    base_dir: Path
    current_primary: Mapping[str, Any] | None = None
    retrain: Callable[[], Mapping[str, Any]] | None = None
    promote: Callable[[int, str], Mapping[str, Any]] | None = None
    audit: Audit | None = None
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))


def run_actions(actions: Sequence[ActionSpec], fired: Sequence[Mapping[str, Any]], summary: Mapping[str, Any],
                ctx: ActionContext) -> list[dict[str, Any]]:
    """Run each action selected by a fired rule; returns one outcome per action (skipped ones too)."""
    if fired and ctx.audit is not None:
        _record(ctx, "monitor_alert", model=ctx.model, version=ctx.version,
                rules=[{"rule": r["rule"], "value": r["value"], "threshold": r["threshold"]} for r in fired])
    outcomes = []
    for action in actions:
        rules = [r for r in fired if r.get("actions") is None or action.label in r["actions"]]
        if not rules:
            outcomes.append({"action": action.label, "type": action.type, "status": "not triggered"})
            continue
        try:
            if action.type == "log":
                outcome = _log(action, rules, summary, ctx)
            elif action.type == "webhook":
                outcome = _webhook(action, rules, summary, ctx)
            else:
                outcome = _retrain(action, ctx)
        except KeelError as exc:
            outcome = {"status": "failed", "detail": exc.what}
        outcome = {"action": action.label, "type": action.type, "rules": [r["rule"] for r in rules], **outcome}
        if ctx.audit is not None:
            _record(ctx, "monitor_action", model=ctx.model, version=ctx.version, action=action.label,
                    type=action.type, status=outcome["status"], detail=str(outcome.get("detail", ""))[:500])
        outcomes.append(outcome)
    return outcomes


def _record(ctx: ActionContext, event: str, **details: Any) -> None:
    """Write to the audit log; a failure to do so is reported, not hidden, but does not stop the actions."""
    try:
        ctx.audit(event, **details)  # type: ignore[misc]
    except Exception as exc:  # the audit log is best effort here: the outcome is printed either way
        sys.stderr.write(f"warning: could not write {event} to the audit log: {type(exc).__name__}: {exc}\n")


def alert_payload(rules: Sequence[Mapping[str, Any]], summary: Mapping[str, Any], ctx: ActionContext) -> dict[str, Any]:
    """The JSON sent by webhooks and written by the log action."""
    return {
        "event": "keelml.monitor.alert",
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "model": ctx.model,
        "version": ctx.version,
        "alerts": [{k: r.get(k) for k in ("rule", "kind", "value", "threshold", "detail")} for r in rules],
        **summary,
    }


def _log(action: ActionSpec, rules: Sequence[Mapping[str, Any]], summary: Mapping[str, Any],
         ctx: ActionContext) -> dict[str, Any]:
    path = ctx.default_log if action.path is None else Path(action.path).expanduser()
    if not path.is_absolute():
        path = ctx.base_dir / path
    line = json.dumps(alert_payload(rules, summary, ctx), sort_keys=True, default=str)
    try:
        private_dirs(path.parent)
        with os.fdopen(open_private(path, os.O_WRONLY | os.O_APPEND), "a", encoding="utf-8") as handle:
            handle.write(line + "\n")
    except OSError as exc:
        return {"status": "failed", "detail": f"cannot write {path}: {exc.strerror or exc}"}
    return {"status": "done", "detail": f"appended to {path}", "path": str(path)}


def _webhook(action: ActionSpec, rules: Sequence[Mapping[str, Any]], summary: Mapping[str, Any],
             ctx: ActionContext) -> dict[str, Any]:
    secret = None
    if action.secret_env is not None:
        value = ctx.environ.get(action.secret_env)
        if not value:
            return {"status": "failed", "detail": f"environment variable {action.secret_env} is not set"}
        secret = value.encode()
    ca_file = None
    if action.ca_file is not None:
        ca = Path(action.ca_file).expanduser()
        ca_file = str(ca if ca.is_absolute() else ctx.base_dir / ca)
    try:
        result = post_json(str(action.url), alert_payload(rules, summary, ctx), allow_private=action.allow_private,
                           timeout=action.timeout_seconds, ca_file=ca_file, secret=secret)
    except WebhookRefused as exc:
        return {"status": "refused", "detail": str(exc)}
    return {"status": "done" if result["ok"] else "failed", "detail": result["detail"], "http_status": result["status"]}


def _retrain(action: ActionSpec, ctx: ActionContext) -> dict[str, Any]:
    """Re-run the pipeline; the gate decides, then the candidate is compared with the monitored version."""
    if ctx.retrain is None:
        return {"status": "failed", "detail": "retraining is not available here"}
    outcome = ctx.retrain()
    steps = outcome.get("steps", [])
    if steps and all(s.get("status") == "cached" for s in steps):
        return {"status": "unchanged", "run_id": outcome.get("run_id"),
                "detail": "every step was cached: the training data has not changed, so nothing was retrained"}
    gate = outcome.get("gate") or {}
    model = outcome.get("model")
    result: dict[str, Any] = {"run_id": outcome.get("run_id"), "gate": gate, "candidate": model}
    if not gate.get("passed"):
        return {**result, "status": "refused by gate", "detail": f"gate: {gate.get('reason', 'no verdict')}"}
    if model is None or not model.get("new_version"):
        return {**result, "status": "unchanged", "detail": "the pipeline registered no new version"}
    comparison = compare(outcome.get("primary_metric") or {}, ctx.current_primary, action.max_regression)
    result["comparison"] = comparison
    if not comparison["passed"]:
        return {**result, "status": "not promoted", "detail": comparison["reason"]}
    if not action.promote:
        return {**result, "status": "registered", "detail": f"v{model['version']} registered; promote: false"}
    if ctx.promote is None:
        return {**result, "status": "registered",
                "detail": f"v{model['version']} registered and passed; promotion needs registry aliases "
                          "(not available in this version)"}
    promoted = ctx.promote(int(model["version"]), f"retrained after a monitoring alert on v{ctx.version}")
    return {**result, "status": "promoted", "promotion": dict(promoted),
            "detail": f"v{model['version']} promoted ({comparison['reason']})"}


def compare(candidate: Mapping[str, Any], current: Mapping[str, Any] | None, max_regression: float) -> dict[str, Any]:
    """Candidate against the monitored version on the primary metric (each on its own held-out data)."""
    if not current or current.get("value") is None or candidate.get("value") is None:
        return {"passed": True, "reason": "no metric of the monitored version to compare with"}
    if candidate.get("name") != current.get("name"):
        return {"passed": True, "reason": f"metrics differ ({candidate.get('name')} vs {current.get('name')})"}
    new, old = float(candidate["value"]), float(current["value"])
    higher = bool(candidate.get("greater_is_better", True))
    loss = (old - new) if higher else (new - old)
    passed = loss <= max_regression
    verb = "within" if passed else "beyond"
    return {"passed": passed, "candidate": new, "current": old, "max_regression": max_regression,
            "reason": f"{candidate['name']} {new:.4f} (candidate) vs {old:.4f} (monitored): change {-loss:+.4f}, "
                      f"{verb} the allowed regression {max_regression:g}"}
