"""README's configuration table names exactly the environment variables the service reads.

The variables read are found in the source itself (Python's ast): os.getenv(...),
os.environ.get(...), os.environ[...], "..." in os.environ, and the typed readers of
classifier_site/env.py (envbool, envint, ...). os.environ.setdefault(...) is not counted:
it sets DJANGO_SETTINGS_MODULE for Django, it configures nothing. The variables documented
are the backticked names in the first cell of each row of README's configuration table.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
ENV_HELPERS_MODULE = REPO / "classifier_site" / "env.py"


def service_sources() -> list[Path]:
    """Every Python file of the service: settings, gunicorn, manage.py, the app, scripts."""
    files = [
        *sorted((REPO / "classifier_site").glob("*.py")),
        REPO / "gunicorn.conf.py",
        REPO / "manage.py",
        *sorted((REPO / "recognition").rglob("*.py")),
    ]
    for script in sorted((REPO / "scripts").iterdir()):
        first_line = script.read_text(errors="replace").partition("\n")[0]
        if script.suffix == ".py" or (first_line.startswith("#!") and "python" in first_line):
            files.append(script)
    return files


def env_helper_names() -> set[str]:
    """The typed readers, taken from their module: a new one is counted without edits."""
    tree = ast.parse(ENV_HELPERS_MODULE.read_text())
    return {
        node.name for node in tree.body
        if isinstance(node, ast.FunctionDef) and node.name.startswith("env")
    }


@dataclass(frozen=True)
class Read:
    name: str | None  # None: not a literal, so which variable cannot be told
    where: str


def _is_os_environ(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.Attribute) and node.attr == "environ"
        and isinstance(node.value, ast.Name) and node.value.id == "os"
    ) or (isinstance(node, ast.Name) and node.id == "environ")


def _literal(node: ast.AST | None) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return None


def environment_reads(source: str, filename: str, helpers: set[str]) -> list[Read]:
    reads = []
    for node in ast.walk(ast.parse(source, filename)):
        where = f"{filename}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Call):
            func = node.func
            first = node.args[0] if node.args else None
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            os_getenv = called == "getenv" and (
                isinstance(func, ast.Name)
                or (isinstance(func.value, ast.Name) and func.value.id == "os")
            )
            environ_get = (
                isinstance(func, ast.Attribute) and func.attr == "get"
                and _is_os_environ(func.value)
            )
            if os_getenv or environ_get or called in helpers:
                reads.append(Read(_literal(first), where))
        elif (
            isinstance(node, ast.Subscript) and _is_os_environ(node.value)
            and isinstance(node.ctx, ast.Load)
        ):
            reads.append(Read(_literal(node.slice), where))
        elif isinstance(node, ast.Compare) and any(_is_os_environ(c) for c in node.comparators):
            reads.append(Read(_literal(node.left), where))
    return reads


def variables_read() -> tuple[set[str], list[str]]:
    """Names read anywhere in the service, and the places that read a name computed at
    run time (allowed only inside the typed readers themselves)."""
    helpers = env_helper_names()
    names, unnamed = set(), []
    for path in service_sources():
        relative = path.relative_to(REPO).as_posix()
        for read in environment_reads(path.read_text(), relative, helpers):
            if read.name is not None:
                names.add(read.name)
            elif path != ENV_HELPERS_MODULE:
                unnamed.append(read.where)
    return names, unnamed


def variables_documented() -> set[str]:
    text = README.read_text()
    section = text.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    names = set()
    for line in section.splitlines():
        if not line.startswith("|"):
            continue
        first_cell = line.strip("|").split("|")[0]
        names.update(re.findall(r"`([A-Z][A-Z0-9_]*)`", first_cell))
    return names


def test_the_scanner_sees_every_way_the_code_reads_a_variable():
    source = """
import os
from classifier_site.env import envint
a = os.getenv("A_GETENV", "x")
b = os.environ.get("B_ENVIRON_GET")
c = os.environ["C_SUBSCRIPT"]
d = "D_MEMBERSHIP" in os.environ
e = envint("E_HELPER", 1, minimum=0)
os.environ.setdefault("NOT_A_READ", "x")
os.environ["NOT_A_READ_EITHER"] = "x"
f = os.getenv(some_name)
"""
    reads = environment_reads(source, "example.py", {"envint"})

    assert {r.name for r in reads} == {
        "A_GETENV", "B_ENVIRON_GET", "C_SUBSCRIPT", "D_MEMBERSHIP", "E_HELPER", None
    }
    assert [r.where for r in reads if r.name is None] == ["example.py:11"]


def test_the_readme_table_is_found_and_holds_the_well_known_variables():
    documented = variables_documented()

    assert {"SECRET_KEY", "ALLOWED_HOSTS", "HOST", "PORT", "RECOGNITION_MAX_BATCH"} <= documented


def test_every_variable_the_service_reads_is_documented_in_the_readme():
    read, _ = variables_read()

    undocumented = read - variables_documented()

    assert not undocumented, f"read but missing from README's configuration table: {sorted(undocumented)}"


def test_every_variable_the_readme_documents_is_read_by_the_service():
    read, _ = variables_read()

    never_read = variables_documented() - read

    assert not never_read, f"in README's configuration table but never read: {sorted(never_read)}"


def test_every_read_names_its_variable_so_it_can_be_checked():
    _, unnamed = variables_read()

    assert not unnamed, f"environment read with a computed name (use a literal): {unnamed}"
