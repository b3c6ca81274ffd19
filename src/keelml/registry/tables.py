"""The registry's tables (SQLAlchemy Core): named models, their versions with status, lineage facts and
signed registration records, aliases and the history of every alias move with its signed record. Only
`keelml.registry.repository` runs SQL on them.

They live on their own `MetaData`; `RegistryRepository` creates the missing ones (checkfirst, under
the store's table-creation lock) when it is constructed.
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
    UniqueConstraint,
)

metadata = MetaData()

models = Table(
    "models",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("created_at", Float, nullable=False),
)

model_versions = Table(
    "model_versions",
    metadata,
    Column("name", String(64), ForeignKey("models.name"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("bundle_id", String(64), nullable=False),
    Column("run_id", String(40), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("metrics", Text, nullable=False),  # JSON summary for listings
    PrimaryKeyConstraint("name", "version"),
    UniqueConstraint("name", "bundle_id"),
)

aliases = Table(
    "aliases",
    metadata,
    Column("name", String(64), nullable=False),
    Column("alias", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("updated_at", Float, nullable=False),
    PrimaryKeyConstraint("name", "alias"),
)

alias_history = Table(
    "alias_history",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(64), nullable=False, index=True),
    Column("alias", String(64), nullable=False),
    Column("action", String(16), nullable=False),  # promotion | rollback
    Column("from_version", Integer),  # None: the alias was not set before
    Column("to_version", Integer, nullable=False),
    Column("actor", String(128), nullable=False),
    Column("at", Float, nullable=False),
    Column("reason", Text, nullable=False),
    Column("audit_seq", Integer),  # the audit record written in the same transaction
)

version_status = Table(  # a version without a row here was registered accepted (before statuses existed)
    "version_status",
    metadata,
    Column("name", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("status", String(16), nullable=False),  # staging (the gate passed) | rejected (the gate refused)
    Column("reasons", Text, nullable=False),  # JSON list of the gate's failed checks (empty when accepted)
    PrimaryKeyConstraint("name", "version"),
)

version_lineage = Table(
    "version_lineage",
    metadata,
    Column("name", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("facts", Text, nullable=False),  # JSON: run, spec digest, code version, origin of an import
    PrimaryKeyConstraint("name", "version"),
)

version_records = Table(  # the signed registration record of each version (records.py); written with the row
    "version_records",
    metadata,
    Column("name", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("record", Text, nullable=False),  # canonical JSON: name, version, bundle, run, time, summary, status...
    Column("sig", Text, nullable=False),  # Ed25519 over the record, by the project's signing key
    PrimaryKeyConstraint("name", "version"),
)

alias_records = Table(  # the signed record of each alias move, chained per alias (records.py)
    "alias_records",
    metadata,
    Column("history_id", Integer, primary_key=True, autoincrement=False),  # alias_history.id
    Column("name", String(64), nullable=False),
    Column("alias", String(64), nullable=False),
    Column("prev_hash", String(64), nullable=False),  # hash of the alias's previous move (64 zeros: its first)
    Column("hash", String(64), nullable=False),  # SHA-256 of the record
    Column("record", Text, nullable=False),  # canonical JSON of the move
    Column("sig", Text, nullable=False),  # Ed25519 over the record
    UniqueConstraint("name", "alias", "prev_hash"),  # one successor per move: concurrent moves cannot fork
)
