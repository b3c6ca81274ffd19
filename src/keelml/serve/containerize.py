"""`keel containerize`: a build context with a minimal Dockerfile, a compose file and the exported bundle.

The image is a slim Python base running as a non-root user, with only the runtime dependencies the
version's engine needs (pinned to the versions that built and validated the model), the keelml
package, the verified bundle (serving components only) and a health check on /v2/health/ready.
API keys are not baked in: the compose file mounts key hashes as a secret, and the prediction log's
key (`keelml.store.sealed.log_key_for`: derived from the project's master key, so the project reads
the container's log with its own keys) as another. The context's files are 0600 and its directories
0700 (the Dockerfile opens what the image's user reads).
"""

from __future__ import annotations

import base64
import importlib.metadata as md
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keelml
from keelml.errors import KeelError
from keelml.serve.exported import export_bundle
from keelml.store.atomic import atomic_write_bytes, private_dirs
from keelml.store.sealed import LOG_KEY_FILE_ENV, log_key_for

BASE_IMAGE = "python:3.11-slim"
PORT = 8000
COMMON = ("fastapi", "uvicorn", "uvloop", "httptools", "orjson", "pydantic", "numpy", "pyarrow", "pyyaml",
          "cryptography")
ENGINE_DEPS = {"onnx": ("onnxruntime",), "sklearn": ("scikit-learn", "skops", "pandas", "scipy", "threadpoolctl")}


@dataclass
class ContainerContext:
    directory: Path
    engine: str
    files: list[str]


def _pin(package: str) -> str:
    try:
        return f"{package}=={md.version(package)}"
    except md.PackageNotFoundError:
        return package


def requirements(engine: str) -> list[str]:
    return [_pin(p) for p in (*COMMON, *ENGINE_DEPS[engine])]


def dockerfile(name: str, version: int, engine: str) -> str:
    health = ("import sys, urllib.request; "
              f"sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:{PORT}/v2/health/ready', timeout=2)"
              ".status == 200 else 1)")
    return f"""# keelml model server for {name} version {version} (engine: {engine}); written by `keel containerize`
FROM {BASE_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \\
    PYTHONUNBUFFERED=1 \\
    PIP_NO_CACHE_DIR=1 \\
    PIP_DISABLE_PIP_VERSION_CHECK=1 \\
    OMP_NUM_THREADS=1

RUN groupadd --system keel && useradd --system --gid keel --no-create-home --shell /usr/sbin/nologin keel

WORKDIR /app
# runtime dependencies only, pinned to the versions that built and validated the model
COPY requirements.txt /app/requirements.txt
RUN pip install --no-cache-dir -r /app/requirements.txt

# the keelml package and the signed, exported bundle (read-only, owned by root)
COPY keelml/ /app/keelml/
COPY bundle/ /app/bundle/
COPY serve.json /app/serve.json
# the build context is private (0600 files, 0700 directories): the server's user reads, nobody writes
RUN chmod -R a+rX,go-w /app/bundle /app/serve.json && mkdir -p /var/lib/keel && chown keel:keel /var/lib/keel \\
    && chmod 0700 /var/lib/keel

ENV PYTHONPATH=/app \\
    KEEL_SERVE_CONFIG_FILE=/app/serve.json \\
    KEEL_SERVE_HOST=0.0.0.0 \\
    KEEL_SERVE_PORT={PORT} \\
    KEEL_LOG_DIR=/var/lib/keel \\
    {LOG_KEY_FILE_ENV}=/run/secrets/keel_log_key

USER keel
EXPOSE {PORT}
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \\
    CMD ["python", "-c", "{health}"]
CMD ["python", "-m", "keelml.serve.server"]
"""


def compose(name: str, version: int) -> str:
    return f"""# create the key hashes first (keel keys export-hashes -o secrets/keel_api_keys), then:
# docker compose up --build
services:
  {name}:
    build: .
    image: keelml/{name}:{version}
    ports:
      - "127.0.0.1:{PORT}:{PORT}"   # loopback only; put a TLS proxy in front to expose it
    read_only: true
    tmpfs:
      - /tmp
    volumes:
      - predictions:/var/lib/keel
    secrets:
      - keel_api_keys
      - keel_log_key     # seals the prediction log (written by keel containerize; keep it with the keys)
    cap_drop:
      - ALL
    security_opt:
      - no-new-privileges:true
    restart: unless-stopped

secrets:
  keel_api_keys:
    file: ./secrets/keel_api_keys
  keel_log_key:
    file: ./secrets/keel_log_key

volumes:
  predictions: {{}}
"""


def _copy_package(target: Path) -> None:
    source = Path(keelml.__file__).resolve().parent
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "templates"),
                    dirs_exist_ok=True)


def containerize(project: Any, name: str, version: int, directory: Path, *,
                 serve: dict[str, Any]) -> ContainerContext:
    """Write the build context for `name` version `version` into `directory` (must be empty or new)."""
    if directory.exists() and any(directory.iterdir()):
        raise KeelError(f"{directory} is not empty", expected="a new or empty directory for the build context",
                        fix="choose another -o DIR or empty this one")
    private_dirs(directory)
    info = export_bundle(project, name, version, directory / "bundle")
    engine = "onnx" if info.get("engine") == "onnx" else "sklearn"
    _copy_package(directory / "keelml")
    config = {"store_root": None, "model": name, "version": version, "serve": serve,
              "bundle_dir": "/app/bundle", "keys_file": "/run/secrets/keel_api_keys",
              "trusted_key_id": project.keys.key_id}
    written = {"serve.json": json.dumps(config, indent=1) + "\n",
               "requirements.txt": "\n".join(requirements(engine)) + "\n",
               "Dockerfile": dockerfile(name, version, engine), "compose.yaml": compose(name, version),
               ".dockerignore": "secrets/\n**/__pycache__\n",
               "secrets/keel_log_key": base64.b64encode(log_key_for(project.keys)).decode() + "\n"}
    for file, text in written.items():
        atomic_write_bytes(directory / file, text.encode())
    files = sorted(str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file()
                   and not str(p.relative_to(directory)).startswith("keelml/"))
    return ContainerContext(directory, engine, files)
