"""The store's own tables (SQLAlchemy Core): runs, steps, the step cache, artifacts, run lineage, the
audit log and tuning trials. Only `keelml.store` runs SQL on them (metadata.py, audit.py).

Other packages own their tables (the registry's in `keelml.registry.tables`, the API keys in
`keelml.serve.keystore`), each on its own `MetaData`, created by `MetadataStore.ensure_tables`
when the owner's repository is constructed.
"""

from __future__ import annotations

from sqlalchemy import (
    Column,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
)

metadata = MetaData()

runs = Table(
    "runs",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("pipeline", String(64), nullable=False, index=True),
    Column("spec_path", Text, nullable=False),
    Column("spec_digest", String(64), nullable=False),
    Column("status", String(16), nullable=False),  # running | succeeded | failed
    Column("started_at", Float, nullable=False),
    Column("finished_at", Float),
    Column("pid", Integer),
    Column("host", String(255)),
    Column("error", Text),
    Column("summary", Text),  # JSON
)

steps = Table(
    "steps",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", String(40), ForeignKey("runs.id"), nullable=False, index=True),
    Column("name", String(64), nullable=False),
    Column("status", String(16), nullable=False),  # ran | cached | failed
    Column("cache_key", String(64), nullable=False),
    Column("duration_s", Float, nullable=False),
    Column("finished_at", Float, nullable=False),
    Column("explain", Text),  # JSON list of reasons
)

step_cache = Table(
    "step_cache",
    metadata,
    Column("cache_key", String(64), primary_key=True),
    Column("scope", String(64), nullable=False),
    Column("step", String(64), nullable=False),
    Column("outputs", Text, nullable=False),  # JSON {output name: artifact id}
    Column("parts", Text, nullable=False),  # JSON of what the key was computed from
    Column("created_at", Float, nullable=False, index=True),
    Column("run_id", String(40), nullable=False),
    # Ed25519 (the project's signing key) over the canonical JSON of cache_key, scope, step and outputs
    # (store/stepcache.py); nullable and marked added, so an older database gains them (ensure_tables)
    Column("signed_by", String(64), info={"added": True}),
    Column("sig", Text, info={"added": True}),
)

artifacts = Table(
    "artifacts",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("codec", String(32), nullable=False),
    Column("size", Integer, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("run_id", String(40), nullable=False),
    Column("step", String(64), nullable=False),
    Column("name", String(64), nullable=False),
)

lineage = Table(
    "lineage",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", String(40), nullable=False, index=True),
    Column("step", String(64), nullable=False),
    Column("direction", String(3), nullable=False),  # in | out
    Column("name", String(64), nullable=False),
    Column("artifact_id", String(64), nullable=False, index=True),
)


audit_log = Table(
    "audit_log",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=False),  # 1, 2, 3... with no gaps
    Column("at", String(32), nullable=False),  # UTC, ISO 8601 with microseconds
    Column("actor", String(128), nullable=False),
    Column("event", String(64), nullable=False, index=True),
    Column("details", Text, nullable=False),  # canonical JSON
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),  # SHA-256 of the canonical JSON of all the above
    Column("signed_by", String(64), nullable=False),
    Column("sig", Text, nullable=False),  # Ed25519 over the hash, by the project's signing key
)


tuning_trials = Table(
    "tuning_trials",
    metadata,
    Column("study", String(128), nullable=False),
    Column("number", Integer, nullable=False),
    Column("run_id", String(40), nullable=False, index=True),
    Column("state", String(16), nullable=False),  # complete | pruned | failed | interrupted
    Column("params", Text, nullable=False),  # JSON
    Column("fold_scores", Text, nullable=False),  # JSON list
    Column("value", Float),  # mean of the fold scores of a complete trial
    Column("duration_s", Float),
    Column("error", Text),
    Column("recorded_at", Float, nullable=False),
    PrimaryKeyConstraint("study", "number"),
)
