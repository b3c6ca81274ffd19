"""`keel serve`, `keel score`, `keel containerize`: deploy a registered model.

Serving, the registry, the spec and rich.progress load inside each command, so `keel --help` stays fast.
"""

from __future__ import annotations

from pathlib import Path

import typer

from keelml.cli.common import SPEC_OPTION, open_from_spec
from keelml.cli.output import err, out, print_json
from keelml.errors import KeelError
from keelml.names import parse_model_ref as parse


def parse_model_ref(text: str) -> tuple[str, int | None, str | None]:
    """(name, fixed version or None, alias or None): NAME (the latest version), NAME/VERSION or NAME@ALIAS."""
    name, ref = parse(text)
    if isinstance(ref, int):
        return name, ref, None
    return name, None, None if ref in (None, "latest") else ref


def _describe(version: int | None, alias: str | None) -> str:
    if version is not None:
        return f"version {version}"
    return f"@{alias}, following it" if alias else "the latest version, following new ones"


def serve(
    model: str = typer.Argument(..., help="NAME (follows the latest version), NAME@ALIAS (follows the alias) or "
                                          "NAME/VERSION (one fixed version)"),
    spec: Path = SPEC_OPTION,
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind (loopback by default)."),
    port: int = typer.Option(8000, "--port", min=0, max=65535),
    tls_cert: Path | None = typer.Option(None, "--tls-cert", help="PEM certificate: serve HTTPS."),
    tls_key: Path | None = typer.Option(None, "--tls-key", help="PEM private key for --tls-cert."),
    workers: int = typer.Option(1, "--workers", min=1, max=64, help="Server processes."),
    insecure_no_auth: bool = typer.Option(False, "--insecure-no-auth",
                                          help="Serve without API keys (prints a warning)."),
    engine: str = typer.Option("auto", "--engine", help="auto (ONNX when the bundle validated it) or sklearn."),
) -> None:
    """Serve a registered model over HTTP: verified before loading, API keys required; follows its alias (or the
    latest version) and swaps to a new version only after verifying it and a smoke prediction."""
    from keelml.registry.project import shared_artifacts
    from keelml.serve.server import ServeConfig
    from keelml.serve.server import serve as run_server
    from keelml.spec.pipeline import load_spec

    name, version, alias = parse_model_ref(model)
    if (tls_cert is None) != (tls_key is None):
        raise KeelError("--tls-cert and --tls-key go together", expected="both files, or neither",
                        fix="pass the certificate and its private key")
    for path in (tls_cert, tls_key):
        if path is not None and not path.is_file():
            raise KeelError(f"TLS file not found: {path}", expected="a PEM file", fix="check the path")
    if engine not in ("auto", "sklearn"):
        raise KeelError(f"unknown engine {engine!r}", expected="auto or sklearn", fix="pass --engine auto")
    loaded = load_spec(spec)
    project = open_from_spec(spec)
    try:
        now = project.registry.resolve(name, version if version is not None else alias)  # unknown: clear error
        root, url, shared = project.root, project.metadata.url, shared_artifacts(project)
    finally:
        project.close()
    if insecure_no_auth:
        err.print("[bold red]WARNING:[/bold red] --insecure-no-auth: every endpoint is open to anyone who can "
                  "reach this address")
    config = ServeConfig(store_root=str(root), model=name, version=version, alias=alias, metadata_url=url,
                         artifacts_url=shared, artifacts_options=loaded.spec.store.artifacts_options,
                         encryption=loaded.spec.store.encryption, serve=loaded.spec.serve.model_dump(mode="json"),
                         insecure_no_auth=insecure_no_auth, prefer_onnx=engine == "auto")
    scheme = "https" if tls_cert else "http"
    err.print(f"serving {name} v{now} ({_describe(version, alias)}) on {scheme}://{host}:{port}  (Ctrl-C to stop)",
              markup=False)
    run_server(config, host=host, port=port, workers=workers, tls_cert=str(tls_cert) if tls_cert else None,
               tls_key=str(tls_key) if tls_key else None)


def score(
    model: str = typer.Argument(..., help="NAME (latest version), NAME@ALIAS or NAME/VERSION"),
    input_path: Path = typer.Argument(..., metavar="INPUT", help="CSV, Parquet or JSON lines file to score."),
    output_path: Path = typer.Argument(..., metavar="OUTPUT", help="Predictions (.parquet, else CSV)."),
    spec: Path = SPEC_OPTION,
    rejects: Path | None = typer.Option(None, "--rejects", help="Rows failing the contract (default OUTPUT.rejects)."),
    chunk_rows: int = typer.Option(50_000, "--chunk-rows", min=1, help="Rows scored at a time."),
    as_json: bool = typer.Option(False, "--json"),
    executor: str | None = typer.Option(None, "--executor", metavar="URL",
                                        help="local or dask://HOST:PORT (chunks scored on the cluster); "
                                             "default: the spec's executor."),
) -> None:
    """Score a large file in chunks; rows that break the contract go to a rejects file with reasons."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from keelml.engine.executors import open_backend
    from keelml.serve.batch import portable_model, score_file
    from keelml.serve.engine import load_registered
    from keelml.spec.pipeline import load_spec

    name, fixed, alias = parse_model_ref(model)
    settings = load_spec(spec).spec
    precision = settings.serve.precision
    backend = open_backend(executor or settings.executor)
    project = open_from_spec(spec)
    try:
        version = project.registry.resolve(name, fixed if fixed is not None else alias)  # resolved once
        loaded = load_registered(project, name, version)
        shared = portable_model(loaded, project.artifacts.get) if backend.kind != "local" else None
    finally:
        project.close()
    with Progress(TextColumn("scoring"), BarColumn(), MofNCompleteColumn(), TextColumn("rows"), TimeElapsedColumn(),
                  console=err, disable=as_json or not err.is_terminal) as progress:
        task = progress.add_task("score", total=None)
        with backend:
            report = score_file(loaded, input_path, output_path, rejects_path=rejects, chunk_rows=chunk_rows,
                                precision=precision, on_progress=lambda n: progress.advance(task, n),
                                executor=backend.executor(), shared=shared)
    if as_json:
        print_json({**report.__dict__, "model": name, "version": version})
        return
    out.print(f"scored {report.rows_scored} of {report.rows_in} rows with {name} v{version} "
              f"({report.engine}) in {report.seconds:.2f}s -> {report.output}")
    if report.rejects:
        out.print(f"rejected {report.rows_rejected} row(s) that break the contract -> {report.rejects}")


def containerize(
    model: str = typer.Argument(..., help="NAME/VERSION (or NAME@ALIAS, resolved now) to package"),
    output: Path = typer.Option(..., "--output", "-o", help="Directory for the build context (new or empty)."),
    spec: Path = SPEC_OPTION,
) -> None:
    """Write a Dockerfile, a compose file and the exported, signed bundle for one version."""
    from keelml.serve.containerize import containerize as build_context
    from keelml.spec.pipeline import load_spec

    name, fixed, alias = parse_model_ref(model)
    if fixed is None and alias is None:
        raise KeelError(f"{model!r} names no version", expected="NAME/VERSION or NAME@ALIAS: an image holds one "
                        "fixed version", fix=f"pass e.g. {name}/1 or {name}@production (see `keel models show {name}`)")
    serve_spec = load_spec(spec).spec.serve.model_dump(mode="json")
    project = open_from_spec(spec)
    try:
        version = fixed if fixed is not None else project.registry.resolve(name, alias)
        context = build_context(project, name, version, output, serve=serve_spec)
    finally:
        project.close()
    out.print(f"wrote the build context for {name} v{version} ({context.engine} engine) to {output}:")
    for file in context.files:
        out.print(f"  {file}")
    out.print(f"next: keel keys export-hashes -f {spec} -o {output / 'secrets' / 'keel_api_keys'}; "
              f"cd {output} && docker compose up --build")
