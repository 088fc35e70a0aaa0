"""The dbt project (`dbt_project/`) as Dagster sees it, and the preparation of its manifest.

This module imports without a manifest and without touching a database (`dagster-dbt project
prepare-and-package --file adpipeline/transform/project.py` imports it to build the manifest).
`ensure_manifest()` (re)builds `dbt_project/target/manifest.json` with `dbt parse` when it is missing or
older than any file of the dbt project; loading the definitions calls it (`load_manifest`), so a fresh
clone needs no preparation step, and a fresh manifest costs only a walk of the project's file times.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from dagster_dbt import DbtProject
from filelock import FileLock

from adpipeline import clock

log = logging.getLogger(__name__)

DBT_PROJECT_DIR = Path(__file__).resolve().parent.parent.parent / "dbt_project"
# What builds the manifest from a shell (Makefile, CI, Docker image build).
PREPARE_COMMAND = "uv run --frozen dagster-dbt project prepare-and-package --file adpipeline/transform/project.py"
# Folders and files whose changes make the manifest stale.
_SOURCE_DIRS = ("models", "macros", "seeds", "tests", "snapshots", "analyses")
PARTIAL_PARSE = "partial_parse.msgpack"  # dbt's saved parse state (runs keep theirs: invocation.py)
_SOURCE_FILES = ("dbt_project.yml", "profiles.yml", "packages.yml", "dependencies.yml", "selectors.yml")

dbt_project = DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR)


def dbt_executable() -> str:
    """The dbt of this Python environment (the venv's own, so no PATH set-up is needed), else `dbt` on PATH."""
    own = Path(sys.executable).with_name("dbt")
    return str(own) if own.exists() else "dbt"


class ManifestMissingError(RuntimeError):
    """The dbt manifest has not been built."""


def _newest_source_mtime(project_dir: Path = DBT_PROJECT_DIR) -> float:
    newest = 0.0
    for name in _SOURCE_FILES:
        path = project_dir / name
        if path.exists():
            newest = max(newest, path.stat().st_mtime)
    for folder in _SOURCE_DIRS:
        root = project_dir / folder
        if root.is_dir():
            for path in root.rglob("*"):
                if path.is_file():
                    newest = max(newest, path.stat().st_mtime)
    return newest


def manifest_is_stale(project: DbtProject = dbt_project) -> bool:
    """True when the manifest is missing, older than a file of the dbt project, or stamped in the future: one
    built under a faked or skewed clock (`faketime -f +100d make test`) would otherwise look newer than every
    edit for as long as the skew lasts."""
    manifest = project.manifest_path
    if not manifest.exists():
        return True
    stamped = manifest.stat().st_mtime
    return stamped < _newest_source_mtime(project.project_dir) or stamped > clock.system_now().timestamp()


def ensure_manifest(project: DbtProject = dbt_project, *, force: bool = False, env: Mapping[str, str] | None = None,
                    dbt_vars: Mapping[str, Any] | None = None,
                    keep_state: Callable[[Path], None] | None = None) -> Path:
    """Build the manifest with `dbt parse` if it is missing or stale (or `force`); return its path.

    Safe to call from several processes at once: one parses under a file lock, the others wait and
    find it fresh. Parsing does not connect to the warehouse. `env` and `dbt_vars` are those the runs will
    use (invocation.prepare_manifest): then a parse, if one is needed, also leaves dbt's parse state of the
    runs, handed to `keep_state` (the folder holding it) once the manifest is in place.
    """
    if not force and not manifest_is_stale(project):
        return project.manifest_path
    target = project.project_dir / project.target_path
    target.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target / ".manifest.lock"), timeout=600):
        if force or manifest_is_stale(project):
            _parse(project, target, env or {}, dbt_vars, keep_state)
    return project.manifest_path


def _parse(project: DbtProject, target: Path, env: Mapping[str, str], dbt_vars: Mapping[str, Any] | None,
           keep_state: Callable[[Path], None] | None) -> None:
    """`dbt parse` into a scratch folder, then move the artifacts in place: a process loading the
    definitions meanwhile reads the old manifest or the new one, never half a file."""
    from dagster_dbt import DbtCliResource

    from adpipeline.transform.resources import environment  # it imports this module

    log.info("preparing the dbt manifest (dbt parse) of %s", project.project_dir)
    started = clock.system_now().timestamp()  # a file mtime: the host's clock
    scratch = Path(tempfile.mkdtemp(prefix=".parse-", dir=target))
    args = ["parse", "--quiet", "--no-partial-parse"]
    if dbt_vars is not None:
        args += ["--vars", json.dumps(dbt_vars, sort_keys=True)]
    try:
        # A full parse: it runs only when a file changed, and dbt's partial re-parse of a changed project can
        # drop the YAML config of a singular test (seen with dbt-core 1.11: its dagster ref vanished).
        with environment(env):
            DbtCliResource(project_dir=project, dbt_executable=dbt_executable()).cli(args, target_path=scratch).wait()
        if not (scratch / "manifest.json").exists():
            raise ManifestMissingError(f"dbt parse wrote no manifest.json into {scratch}")
        os.replace(scratch / "manifest.json", project.manifest_path)
        # stamped with the parse's start: a file edited while dbt parsed still makes it stale
        os.utime(project.manifest_path, (started, started))
        if keep_state is not None:
            keep_state(scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def load_manifest(project: DbtProject = dbt_project) -> Path:
    """The manifest the definitions load, built first when it is missing or stale — as dagster-dbt's
    `prepare_if_dev` does under `dagster dev`, but for every loader, so `dagster definitions validate` or
    `dagster dev` on a fresh clone just work. A stale manifest that cannot be rebuilt (a read-only image)
    is used with a warning; a missing one that cannot be built is a clear error naming the command."""
    try:
        return ensure_manifest(project)
    except Exception as exc:  # noqa: BLE001 - dbt's own errors, reported with the way out
        if project.manifest_path.exists():
            log.warning("the dbt manifest %s is stale and could not be rebuilt (%s: %s); using it as it is",
                        project.manifest_path, type(exc).__name__, exc)
            return project.manifest_path
        raise ManifestMissingError(
            f"the dbt manifest {project.manifest_path} does not exist and `dbt parse` failed "
            f"({type(exc).__name__}: {exc}), so the dbt assets cannot be defined. Fix the dbt project, then build "
            f"the manifest with `{PREPARE_COMMAND}` (or `make manifest`)."
        ) from exc


if __name__ == "__main__":  # `python -m adpipeline.transform.project`: build the manifest if stale
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    print(ensure_manifest())
