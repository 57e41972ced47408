"""The typed surface stays true: the `_core` stub matches the compiled module, the
package type-checks against it, and the Python enum matches the core's type table."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import quantlens
from quantlens import _core

PACKAGE = Path(quantlens.__file__).parent


def _run(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # From an empty folder, so that the installed package is what gets checked.
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, cwd=cwd)


def test_stub_matches_compiled_module(tmp_path: Path) -> None:
    result = _run(tmp_path, "mypy.stubtest", "quantlens._core")
    assert result.returncode == 0, result.stdout + result.stderr


def test_package_type_checks(tmp_path: Path) -> None:
    # By package name: given a path inside site-packages, mypy would take site-packages
    # itself for a source root.
    result = _run(tmp_path, "mypy", "--strict", "-p", "quantlens")
    assert result.returncode == 0, result.stdout + result.stderr


def test_py_typed_marker_ships() -> None:
    assert (PACKAGE / "py.typed").is_file()


def test_enum_equals_core_type_table() -> None:
    table = {name: type_id for type_id, name, _, _ in _core.ggml_types()}
    enum = {member.name: member.value for member in quantlens.GGMLQuantizationType}
    assert enum == table
