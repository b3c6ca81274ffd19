"""Validate a source chunk by chunk: the report of a whole file from the tallies of its chunks.

Every chunk goes through :func:`keelml.data.validate.validate_frame`; the rules look at one row at a
time, so counts, reasons and null fractions add up to exactly those of one pass over the whole file.
Quarantined rows (with ``_row`` counted from the start of the file) go to ``on_quarantine`` as soon
as their chunk is checked. Deduplication compares rows across the whole file and is not offered here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from keelml.data.anomalies import EXAMPLES
from keelml.data.chunked import Chunk
from keelml.data.contract import Contract
from keelml.data.sources import REJECT_SCHEMA
from keelml.data.validate import ROW_COLUMN, Tally, build_report, validate_frame
from keelml.spec.data import ValidationSpec

KEEP_ROWS = 1000
"""At most this many quarantined rows and reader rejects are kept in memory (the sinks get them all)."""


@dataclass(frozen=True)
class StreamedValidation:
    """The whole file's report, its first quarantined rows and reader rejects, and their totals."""

    report: dict[str, Any]
    quarantine: pl.DataFrame
    rejects: pl.DataFrame
    rejected: int
    chunks: int


@dataclass
class _Totals:
    tally: Tally | None = None
    quarantine: list[pl.DataFrame] = field(default_factory=list)
    kept: int = 0
    rejects: list[pl.DataFrame] = field(default_factory=list)
    rejected: int = 0
    chunks: int = 0


def validate_chunks(chunks: Iterable[Chunk], contract: Contract, *, require_target: bool | None = None,
                    options: ValidationSpec | None = None, pii_key: bytes | None = None,
                    on_quarantine: Callable[[pl.DataFrame], None] | None = None,
                    on_valid: Callable[[pl.DataFrame], None] | None = None) -> StreamedValidation:
    """Validate every chunk against ``contract``; the result is that of validating all rows at once.

    ``require_target=None`` requires the target column when the first chunk has it. Passing rows go
    to ``on_valid`` and failing rows to ``on_quarantine`` chunk by chunk (empty frames included, so a
    sink learns the schema); only the first ``KEEP_ROWS`` of each are kept in the result.
    """
    options = options or ValidationSpec()
    totals = _Totals()
    for chunk in chunks:
        if require_target is None:
            require_target = contract.target in chunk.frame.columns
        result = validate_frame(chunk.frame, contract, require_target=require_target, options=options,
                                pii_key=pii_key)
        quarantine = result.quarantine.with_columns(pl.col(ROW_COLUMN) + chunk.offset)
        if on_quarantine is not None:
            on_quarantine(quarantine)
        if on_valid is not None:
            on_valid(result.valid)
        if totals.kept < KEEP_ROWS or not totals.quarantine:
            totals.quarantine.append(quarantine.head(KEEP_ROWS - totals.kept))
            totals.kept += min(quarantine.height, KEEP_ROWS - totals.kept)
        if chunk.rejects.height:
            if sum(r.height for r in totals.rejects) < KEEP_ROWS:
                totals.rejects.append(chunk.rejects)
            totals.rejected += chunk.rejects.height
        assert result.tally is not None
        totals.tally = result.tally if totals.tally is None else add_tallies(totals.tally, result.tally)
        totals.chunks += 1
    if totals.tally is None:
        raise ValueError("no chunks to validate")
    rejects = pl.concat(totals.rejects).head(KEEP_ROWS) if totals.rejects else pl.DataFrame(schema=REJECT_SCHEMA)
    return StreamedValidation(report=build_report(totals.tally, contract, options),
                              quarantine=pl.concat(totals.quarantine), rejects=rejects,
                              rejected=totals.rejected, chunks=totals.chunks)


def add_tallies(first: Tally, then: Tally) -> Tally:
    """The tally of two consecutive chunks of the same data."""
    checks = first.checks + [c for c in then.checks if c not in first.checks]
    counts = dict(first.counts)
    for key, value in then.counts.items():
        counts[key] = counts.get(key, 0) + value
    examples = dict(first.examples)
    for key, frame in then.examples.items():
        have = examples.get(key)
        if have is None:
            examples[key] = frame
        elif have.height < EXAMPLES:
            examples[key] = pl.concat([have, frame], how="diagonal_relaxed").head(EXAMPLES)
    return Tally(checked=first.checked, checks=checks, rows=first.rows + then.rows,
                 nulls=[a + b for a, b in zip(first.nulls, then.nulls, strict=True)], counts=counts,
                 examples=examples, quarantined=first.quarantined + then.quarantined, extra=first.extra,
                 missing=first.missing)
