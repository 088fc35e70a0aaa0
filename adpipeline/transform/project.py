"""The dbt project (`dbt_project/`) as Dagster sees it, and the preparation of its manifest.

This module imports without a manifest and without touching a database (`dagster-dbt project
prepare-and-package --file adpipeline/transform/project.py` imports it to build the manifest).
`ensure_manifest()` (re)builds `dbt_project/target/manifest.json` with `dbt parse` when it is missing or
older than any file of the dbt project; the CLI start-up, the test session and the Makefile call it.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

from dagster_dbt import DbtProject
from filelock import FileLock

log = logging.getLogger(__name__)

DBT_PROJECT_DIR = Path(__file__).resolve().parent.parent.parent / "dbt_project"
# What builds the manifest from a shell (Makefile, CI, Docker image build).
PREPARE_COMMAND = "uv run --frozen dagster-dbt project prepare-and-package --file adpipeline/transform/project.py"
# Folders and files whose changes make the manifest stale.
_SOURCE_DIRS = ("models", "macros", "seeds", "tests", "snapshots", "analyses")
PARTIAL_PARSE = "partial_parse.msgpack"
_SOURCE_FILES = ("dbt_project.yml", "profiles.yml", "packages.yml", "dependencies.yml", "selectors.yml")

dbt_project = DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR)


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
    """True when the manifest is missing or older than a file of the dbt project."""
    manifest = project.manifest_path
    if not manifest.exists():
        return True
    return manifest.stat().st_mtime < _newest_source_mtime(project.project_dir)


def ensure_manifest(project: DbtProject = dbt_project, *, force: bool = False) -> Path:
    """Build the manifest with `dbt parse` if it is missing or stale (or `force`); return its path.

    Safe to call from several processes at once: one parses under a file lock, the others wait and
    find it fresh. Parsing does not connect to the warehouse.
    """
    if not force and not manifest_is_stale(project):
        return project.manifest_path
    target = project.project_dir / project.target_path
    target.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target / ".manifest.lock"), timeout=600):
        if force or manifest_is_stale(project):
            _parse(project, target)
    return project.manifest_path


def _parse(project: DbtProject, target: Path) -> None:
    """`dbt parse` into a scratch folder, then move the artifacts in place: a process loading the
    definitions meanwhile reads the old manifest or the new one, never half a file."""
    from dagster_dbt import DbtCliResource

    log.info("preparing the dbt manifest (dbt parse) of %s", project.project_dir)
    started = time.time()
    scratch = Path(tempfile.mkdtemp(prefix=".parse-", dir=target))
    try:
        partial = target / PARTIAL_PARSE
        if partial.exists():
            shutil.copy2(partial, scratch / PARTIAL_PARSE)  # dbt re-parses only what changed
        DbtCliResource(project_dir=project).cli(["parse", "--quiet"], target_path=scratch).wait()
        if not (scratch / "manifest.json").exists():
            raise ManifestMissingError(f"dbt parse wrote no manifest.json into {scratch}")
        if (scratch / PARTIAL_PARSE).exists():
            os.replace(scratch / PARTIAL_PARSE, partial)
        os.replace(scratch / "manifest.json", project.manifest_path)
        # stamped with the parse's start: a file edited while dbt parsed still makes it stale
        os.utime(project.manifest_path, (started, started))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def require_manifest(project: DbtProject = dbt_project) -> Path:
    """The manifest path for loading definitions; a clear error naming the command when it is missing."""
    if not project.manifest_path.exists():
        raise ManifestMissingError(
            f"the dbt manifest {project.manifest_path} does not exist, so the dbt assets cannot be defined. "
            f"Build it with `{PREPARE_COMMAND}` (or `make manifest`); `adpipeline dev|demo` and the test "
            "suite build it automatically."
        )
    if manifest_is_stale(project):
        log.warning("the dbt manifest %s is older than the dbt project; rebuild it with `%s`",
                    project.manifest_path, PREPARE_COMMAND)
    return project.manifest_path


if __name__ == "__main__":  # `python -m adpipeline.transform.project`: build the manifest if stale
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    print(ensure_manifest())
