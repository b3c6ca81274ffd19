"""`keel contract infer`: infer a data contract from a data file and write it as YAML.

The data layer and the spec load inside the command, so `keel --help` stays fast.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from keelml.cli.data_input import (
    DATA_ARGUMENT,
    DATA_SPEC_OPTION,
    DELIMITER_OPTION,
    FORMAT_OPTION,
    NO_HEADER_OPTION,
    NULL_VALUE_OPTION,
    ROLE_OPTION,
    DataOptions,
    Role,
    check_writable,
    load_data,
    write_output,
)
from keelml.cli.output import err
from keelml.errors import DataError

app = typer.Typer(help="Data contracts: infer one from data.", no_args_is_help=True)


@app.command("infer")
def infer(
    data: str | None = DATA_ARGUMENT,
    target: str | None = typer.Option(None, "--target", help="The column to predict (default: the spec's)."),
    output: Path | None = typer.Option(None, "--output", "-o", help="Write the YAML here instead of stdout."),
    spec: Path | None = DATA_SPEC_OPTION,
    role: Role = ROLE_OPTION,
    fmt: str | None = FORMAT_OPTION,
    delimiter: str | None = DELIMITER_OPTION,
    no_header: bool = NO_HEADER_OPTION,
    null_value: list[str] | None = NULL_VALUE_OPTION,
) -> None:
    """Infer the contract (types, nullability, categories, ranges, roles, task) of DATA."""
    from keelml.data.contract import close_match_hint, contract_to_yaml
    from keelml.data.infer import infer_contract
    from keelml.spec.data import ContractSpec

    if output is not None:
        check_writable(output, "--output")
    loaded = load_data(DataOptions(data, spec, role, fmt, delimiter, no_header, null_value))
    pipeline = loaded.spec.spec if loaded.spec is not None else None
    target = target or (pipeline.data.target if pipeline is not None else None)
    if target is None:
        raise DataError("no target column given", expected="--target COLUMN (the column the model will predict)",
                        fix=f"add --target, one of: {', '.join(loaded.frame.columns)}")
    if target not in loaded.frame.columns:
        raise DataError(f"the target column {target!r} is not in {loaded.location}",
                        expected=f"one of the columns: {', '.join(loaded.frame.columns)}",
                        fix=f"{close_match_hint(target, loaded.frame.columns)}pass --target with the column to predict")
    contract = infer_contract(
        loaded.frame, target=target, options=pipeline.contract if pipeline is not None else ContractSpec(),
        drop_columns=pipeline.data.drop_columns if pipeline is not None else (),
        sensitive_columns=pipeline.data.sensitive_columns if pipeline is not None else (),
    )
    text = contract_to_yaml(contract)
    if output is None:
        sys.stdout.write(text)
        return
    write_output(output, text.encode("utf-8"), "--output")
    err.print(f"wrote {output}: {len(contract.columns)} columns, task {contract.task}, "
              f"contract version {contract.version}", markup=False, soft_wrap=True)
