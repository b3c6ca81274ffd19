"""The metadata store: runs, steps, the step cache, artifacts, run lineage and tuning trials on any
SQLAlchemy URL; the connection every package's tables live behind (see `ensure_tables`)."""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, Engine, MetaData, Table, create_engine, event, insert, inspect, select, text, update
from sqlalchemy.exc import IntegrityError as SqlIntegrityError
from sqlalchemy.exc import OperationalError, ProgrammingError

from keelml.errors import NotFoundError
from keelml.store import tables
from keelml.store.atomic import private_sqlite_files
from keelml.store.process import pid_alive

_SCHEMA_LOCK = 0x6B65656C  # "keel": the advisory lock that serialises table creation on PostgreSQL


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


class MetadataStore:
    """Thin, explicit SQL over the store's tables (tables.py). Every write is its own transaction.

    `engine` is the connection other packages' repositories use for their own tables.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        private_sqlite_files(url)
        self.engine: Engine = create_engine(url, future=True)
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._ensured: list[MetaData] = []
        self.ensure_tables(tables.metadata)

    def ensure_tables(self, owned: MetaData) -> None:
        """Create the missing tables of one owner (once per store object); another process creating
        them at the same moment is fine.

        On PostgreSQL the check-then-create runs under a transaction-scoped advisory lock, so
        concurrent first runs queue instead of colliding in the catalog.
        """
        if any(known is owned for known in self._ensured):
            return
        for attempt in range(5):
            try:
                with self.engine.begin() as conn:
                    if self.engine.dialect.name == "postgresql":
                        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SCHEMA_LOCK})
                    owned.create_all(conn, checkfirst=True)
                    _add_missing_columns(conn, owned)
                break
            except (OperationalError, ProgrammingError, SqlIntegrityError) as exc:
                if not any(s in str(exc) for s in ("already exists", "duplicate key", "duplicate column")) \
                        or attempt == 4:
                    raise
        self._ensured.append(owned)

    def close(self) -> None:
        self.engine.dispose()

    # runs -----------------------------------------------------------------------------------
    def start_run(self, run_id: str, *, pipeline: str, spec_path: str, spec_digest: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(insert(tables.runs).values(
                id=run_id, pipeline=pipeline, spec_path=spec_path, spec_digest=spec_digest,
                status="running", started_at=time.time(), pid=os.getpid(), host=socket.gethostname(),
            ))

    def finish_run(self, run_id: str, *, status: str, error: str | None = None,
                   summary: Mapping[str, Any] | None = None) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(tables.runs).where(tables.runs.c.id == run_id).values(
                status=status, finished_at=time.time(), error=error,
                summary=json.dumps(summary) if summary is not None else None,
            ))

    def list_runs(self, *, pipeline: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
        query = select(tables.runs).order_by(tables.runs.c.started_at.desc()).limit(limit)
        if pipeline:
            query = query.where(tables.runs.c.pipeline == pipeline)
        with self.engine.connect() as conn:
            return [self._run_row(dict(r._mapping)) for r in conn.execute(query)]

    def _run_row(self, row: dict[str, Any]) -> dict[str, Any]:
        if row["status"] == "running" and not pid_alive(row.get("pid"), row.get("host")):
            row["status"] = "interrupted"
        row["summary"] = json.loads(row["summary"]) if row.get("summary") else None
        return row

    def get_run(self, run_id: str) -> dict[str, Any]:
        """A run (by id or unique id prefix) with its steps and lineage."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(tables.runs).where(
                tables.runs.c.id.startswith(run_id, autoescape=True))).all()
            if len(rows) != 1:
                raise NotFoundError(
                    f"no run matches {run_id!r}" if not rows else f"{run_id!r} matches {len(rows)} runs",
                    expected="a run id or a unique prefix of one",
                    fix="list the runs with `keel runs list`",
                )
            run = self._run_row(dict(rows[0]._mapping))
            steps = conn.execute(select(tables.steps).where(tables.steps.c.run_id == run["id"])
                                 .order_by(tables.steps.c.id)).all()
            edges = conn.execute(select(tables.lineage).where(tables.lineage.c.run_id == run["id"])
                                 .order_by(tables.lineage.c.id)).all()
        run["steps"] = [
            {**dict(s._mapping), "explain": json.loads(s.explain) if s.explain else []} for s in steps
        ]
        run["lineage"] = [dict(e._mapping) for e in edges]
        return run

    def run_spec(self, run_id: str) -> dict[str, Any] | None:
        """The spec (path and SHA-256) a run (by exact id) ran; None for an unknown run."""
        query = select(tables.runs.c.spec_path, tables.runs.c.spec_digest).where(tables.runs.c.id == run_id)
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        return {"path": row.spec_path, "digest": row.spec_digest} if row else None

    # the step cache: rows only (their signatures are checked by store/stepcache.py) -------------
    def cache_entry(self, key: str) -> dict[str, Any] | None:
        """The step cache's row for a key (outputs decoded when they are JSON), or None."""
        with self.engine.connect() as conn:
            row = conn.execute(select(tables.step_cache).where(tables.step_cache.c.cache_key == key)).first()
        return _cache_row(dict(row._mapping)) if row else None

    def cache_entries(self) -> list[dict[str, Any]]:
        """Every row of the step cache (for `keel verify`), oldest first."""
        query = select(tables.step_cache).order_by(tables.step_cache.c.created_at)
        with self.engine.connect() as conn:
            return [_cache_row(dict(r._mapping)) for r in conn.execute(query)]

    def previous_parts(self, scope: str, step: str) -> dict[str, Any] | None:
        query = (select(tables.step_cache.c.parts)
                 .where(tables.step_cache.c.scope == scope, tables.step_cache.c.step == step)
                 .order_by(tables.step_cache.c.created_at.desc()).limit(1))
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        return dict(json.loads(row.parts)) if row else None

    def put_cache_entry(self, *, key: str, scope: str, step: str, outputs: Mapping[str, str],
                        parts: Mapping[str, Any], run_id: str, signed_by: str, sig: str) -> None:
        values = {"scope": scope, "step": step, "outputs": json.dumps(dict(outputs), sort_keys=True),
                  "parts": json.dumps(dict(parts), sort_keys=True), "created_at": time.time(),
                  "run_id": run_id, "signed_by": signed_by, "sig": sig}
        with self.engine.begin() as conn:
            _upsert(conn, tables.step_cache, {"cache_key": key}, values)

    def record_step(self, *, run_id: str, name: str, status: str, key: str, duration_s: float,
                    explain: list[str], inputs: Mapping[str, str],
                    outputs: Mapping[str, tuple[str, str, int]]) -> None:
        """One step's outcome, its lineage edges and the artifacts it wrote, in one transaction."""
        now = time.time()
        with self.engine.begin() as conn:
            conn.execute(insert(tables.steps).values(
                run_id=run_id, name=name, status=status, cache_key=key, duration_s=duration_s,
                finished_at=now, explain=json.dumps(explain)))
            edges = [{"run_id": run_id, "step": name, "direction": "in", "name": n, "artifact_id": a}
                     for n, a in inputs.items()]
            edges += [{"run_id": run_id, "step": name, "direction": "out", "name": n, "artifact_id": a}
                      for n, (a, _, _) in outputs.items()]
            if edges:
                conn.execute(insert(tables.lineage), edges)
            for out_name, (artifact_id, codec, size) in outputs.items():
                if size < 0:
                    continue  # a cached output: already recorded when it was written
                known = conn.execute(select(tables.artifacts.c.id)
                                     .where(tables.artifacts.c.id == artifact_id)).first()
                if known is None:
                    try:
                        with conn.begin_nested():
                            conn.execute(insert(tables.artifacts).values(
                                id=artifact_id, codec=codec, size=size, created_at=now, run_id=run_id,
                                step=name, name=out_name))
                    except SqlIntegrityError:
                        pass  # another process recorded the same content first

    # tuning trials ---------------------------------------------------------------------------
    def record_trial(self, trial: Mapping[str, Any], *, study: str, run_id: str) -> None:
        """Insert or update one tuning trial (number, state, params, fold_scores, value, duration_s, error)."""
        values = {"run_id": run_id, "state": trial["state"], "params": json.dumps(trial["params"], sort_keys=True),
                  "fold_scores": json.dumps(list(trial["fold_scores"])), "value": trial.get("value"),
                  "duration_s": trial.get("duration_s"), "error": trial.get("error"), "recorded_at": time.time()}
        table = tables.tuning_trials
        with self.engine.begin() as conn:
            _upsert(conn, table, {"study": study, "number": trial["number"]}, values)

    def list_trials(self, study: str | None = None, *, run_id: str | None = None) -> list[dict[str, Any]]:
        """Recorded tuning trials of a study (or a run), in trial order."""
        table = tables.tuning_trials
        query = select(table).order_by(table.c.study, table.c.number)
        if study is not None:
            query = query.where(table.c.study == study)
        if run_id is not None:
            query = query.where(table.c.run_id == run_id)
        with self.engine.connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(query)]
        for row in rows:
            row["params"] = json.loads(row["params"])
            row["fold_scores"] = json.loads(row["fold_scores"])
        return rows

    def referenced_artifacts(self) -> set[str]:
        """Every artifact id the step cache points at (the registry's bundles: `Project.referenced_artifacts`)."""
        ids: set[str] = set()
        with self.engine.connect() as conn:
            for row in conn.execute(select(tables.step_cache.c.outputs)):
                outputs = _json(row.outputs)
                if isinstance(outputs, dict):
                    ids.update(str(v) for v in outputs.values())
        return ids


def _json(text: str | None) -> Any:
    try:
        return json.loads(text) if text is not None else None
    except ValueError:
        return None


def _cache_row(row: dict[str, Any]) -> dict[str, Any]:
    """A step cache row with its outputs decoded; an edit that broke the JSON leaves them None."""
    return {**row, "outputs": _json(row["outputs"])}


def _add_missing_columns(conn: Connection, owned: MetaData) -> None:
    """Add the columns a table gained after its first release (nullable, marked `info={"added": True}`) to a
    database created before them; no other migration is made."""
    inspector = None
    for table in owned.sorted_tables:
        added = [c for c in table.columns if c.info.get("added") and c.nullable]
        if not added:
            continue
        inspector = inspector or inspect(conn)
        present = {c["name"] for c in inspector.get_columns(table.name)}
        for column in added:
            if column.name not in present:
                kind = column.type.compile(dialect=conn.dialect)
                conn.execute(text(f'ALTER TABLE {table.name} ADD COLUMN "{column.name}" {kind}'))


def _upsert(conn: Connection, table: Table, key: Mapping[str, Any], values: Mapping[str, Any]) -> None:
    """Update the row with this key, or insert it; a concurrent insert of the same key turns into an update."""
    where = [table.c[name] == value for name, value in key.items()]
    for _attempt in range(3):
        if conn.execute(update(table).where(*where).values(**values)).rowcount:
            return
        try:
            with conn.begin_nested():  # a savepoint: a lost race must not abort the whole transaction
                conn.execute(insert(table).values(**key, **values))
            return
        except SqlIntegrityError:
            continue  # another process inserted it between our update and insert: update it now
    raise RuntimeError(f"could not write a {table.name} row: too much concurrent writing")
