"""The architecture's rules, enforced: the layering contract (import-linter, [tool.importlinter] in
pyproject.toml), product code that runs without the test tools, and one clock."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parent.parent
PACKAGE = PROJECT / "adpipeline"
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(LINT_IMPORTS), "--no-cache", "--config", str(root / "pyproject.toml")], cwd=root,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(root)}, capture_output=True, text=True,
                          timeout=300)


def test_the_layering_contract_holds() -> None:
    result = lint_imports(PROJECT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(("module", "wrong_import", "broken"), [
    ("warehouse/db.py", "import adpipeline.cli", "adpipeline.warehouse is not allowed to import adpipeline.cli"),
    ("sources/meta/client.py", "import pytest", "product code never imports test code BROKEN"),
    ("sources/ga4/client.py", "import adpipeline.sandbox.ga4", "sources never import the sandbox BROKEN"),
    ("monitoring/doctor.py", "import adpipeline.definitions", "monitoring never imports the CLI"),
    ("sandbox/meta/graph.py", "from adpipeline.config import get_config", "the sandbox never reads the pipeline's"),
])
def test_a_wrong_way_import_breaks_the_contract(tmp_path: Path, module: str, wrong_import: str, broken: str) -> None:
    """The contract is not vacuous: the same check on a copy with one deliberate wrong-way import fails."""
    shutil.copytree(PACKAGE, tmp_path / "adpipeline", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(PROJECT / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / "adpipeline" / module
    target.write_text(target.read_text() + f"\n{wrong_import}  # deliberate\n")
    result = lint_imports(tmp_path)
    assert result.returncode == 1, result.stdout
    assert broken in " ".join(result.stdout.split()), result.stdout


def test_every_product_module_imports_without_the_test_tools() -> None:
    """What a newcomer's `make demo` has: no pytest. Every module of the package imports with it blocked."""
    script = (
        "import sys, pkgutil, importlib\n"
        "for name in ('pytest', '_pytest', 'importlinter'):\n"
        "    sys.modules[name] = None  # importing it raises ImportError\n"
        "import adpipeline\n"
        "names = [m.name for m in pkgutil.walk_packages(adpipeline.__path__, 'adpipeline.')\n"
        "         if not m.name.endswith('.__main__')]  # those run a program\n"
        "for name in names:\n"
        "    importlib.import_module(name)\n"
        "print(len(names))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=PROJECT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert int(result.stdout.split()[-1]) > 50


# The clock's readings: calls that ask the host what time it is.
CLOCK_CALLS = {("datetime", "now"), ("datetime", "utcnow"), ("datetime", "today"), ("date", "today"),
               ("time", "time"), ("time", "time_ns")}


def clock_readings(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner = node.func.value
            name = owner.id if isinstance(owner, ast.Name) else owner.attr if isinstance(owner, ast.Attribute) else ""
            if (name, node.func.attr) in CLOCK_CALLS:
                found.append(f"{path.relative_to(PROJECT)}:{node.lineno} {name}.{node.func.attr}()")
    return found


def test_only_the_clock_module_reads_the_time() -> None:
    readings = [r for path in sorted(PACKAGE.rglob("*.py")) if path != PACKAGE / "clock.py"
                for r in clock_readings(path)]
    assert readings == [], "read the time through adpipeline.clock:\n" + "\n".join(readings)
    assert clock_readings(PACKAGE / "clock.py")  # the scanner does see a reading where there is one


def test_sql_in_product_code_takes_time_from_the_clock_not_the_server() -> None:
    """The sync log, alerts, deletions and retention are compared with the pipeline's clock, so they are stamped
    by it: Postgres' now() disagrees whenever the pipeline follows the sandbox's clock."""
    server_time = ("now()", "clock_timestamp()", "current_timestamp", "current_date")
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == PACKAGE / "warehouse" / "loader.py":
            continue  # loaded_at is the server's load time, by contract; nothing compares it with the clock
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                sql = re.search(r"\b(SELECT|UPDATE|INSERT|DELETE)\b", node.value) and "DEFAULT" not in node.value
                if sql and any(f in node.value.lower() for f in server_time):
                    offenders.append(f"{path.relative_to(PROJECT)}:{node.lineno}: {node.value.strip()[:80]}")
    assert offenders == [], "\n".join(offenders)
