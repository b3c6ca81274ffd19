"""Entry point of `keel`: command groups, and one place that turns errors into helpful exits."""

from __future__ import annotations

import sys
import traceback

import typer
from rich.markup import escape

from keelml.cli import audit as audit_cmd
from keelml.cli import contract as contract_cmd
from keelml.cli import export as export_cmd
from keelml.cli import init as init_cmd
from keelml.cli import keys as keys_cmd
from keelml.cli import lineage as lineage_cmd
from keelml.cli import models as models_cmd
from keelml.cli import monitor as monitor_cmd
from keelml.cli import profile as profile_cmd
from keelml.cli import report as report_cmd
from keelml.cli import run as run_cmd
from keelml.cli import runs as runs_cmd
from keelml.cli import serve as serve_cmd
from keelml.cli import validate as validate_cmd
from keelml.cli import verify as verify_cmd
from keelml.cli.output import err
from keelml.errors import KeelError

app = typer.Typer(
    name="keel",
    help="keelml: from raw tabular data to a signed, registered, verified model.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
) -> None:
    """keelml: from raw tabular data to a signed, registered, verified model."""


app.command("init")(init_cmd.init)
app.command("run")(run_cmd.run)
app.command("verify")(verify_cmd.verify)
app.command("report")(report_cmd.report)
app.add_typer(runs_cmd.app, name="runs")
app.add_typer(models_cmd.app, name="models")
app.command("validate")(validate_cmd.validate)
app.command("profile")(profile_cmd.profile)
app.add_typer(contract_cmd.app, name="contract")
app.add_typer(keys_cmd.app, name="keys")
app.command("lineage")(lineage_cmd.lineage)
app.command("audit")(audit_cmd.audit)
app.command("serve")(serve_cmd.serve)
app.command("score")(serve_cmd.score)
app.command("containerize")(serve_cmd.containerize)
app.command("monitor")(monitor_cmd.monitor)
app.command("export")(export_cmd.export)


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; user errors print a three-part message and exit 2 (3 for integrity failures).

    With --debug the full traceback is printed instead, and the exit code stays the same."""
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    try:
        app(args=args, prog_name="keel")
    except KeelError as exc:
        if debug:  # the traceback, and still the error's own exit code (3 stays 3)
            traceback.print_exc()
            sys.exit(exc.exit_code)
        err.print(f"[bold red]error:[/bold red] {escape(exc.what)}", soft_wrap=True)
        if exc.expected:
            err.print(f"  [bold]expected:[/bold] {escape(exc.expected)}", soft_wrap=True)
        if exc.fix:
            err.print(f"  [bold]fix:[/bold] {escape(exc.fix)}", soft_wrap=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted: finished steps are cached; run the same command again to resume\n")
        sys.exit(130)
    except Exception as exc:  # an unexpected failure: short message unless --debug
        if debug:
            traceback.print_exc()
            sys.exit(1)
        sys.stderr.write(
            f"internal error: {type(exc).__name__}: {exc}\n"
            "  this is a bug in keelml, not in your input; re-run with --debug for the traceback\n"
        )
        sys.exit(1)
