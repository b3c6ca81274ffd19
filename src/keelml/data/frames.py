"""The table codec of the artifact store: a frame to deterministic Parquet bytes and back."""

from __future__ import annotations

import io

import polars as pl

from keelml.errors import IntegrityError

ROW_GROUP_SIZE = 128 * 1024
COMPRESSION_LEVEL = 3


def encode_table(df: pl.DataFrame) -> bytes:
    """Parquet (zstd) bytes of ``df``; the same frame always encodes to the same bytes."""
    buffer = io.BytesIO()
    df.rechunk().write_parquet(
        buffer,
        compression="zstd",
        compression_level=COMPRESSION_LEVEL,
        statistics=True,
        row_group_size=ROW_GROUP_SIZE,
    )
    return buffer.getvalue()


def decode_table(data: bytes) -> pl.DataFrame:
    """The frame stored by :func:`encode_table`; unreadable bytes raise IntegrityError."""
    try:
        return pl.read_parquet(io.BytesIO(data))
    except (pl.exceptions.PolarsError, OSError, ValueError) as exc:
        raise IntegrityError(
            f"a stored table could not be decoded as Parquet: {str(exc).strip().splitlines()[0]}",
            expected="the Parquet bytes written by keelml",
            fix="the artifact is corrupt; re-run the step that produced it",
        ) from None
