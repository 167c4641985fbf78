"""No SQL outside `runner/store/`: every statement the rest of the code runs goes through a store
function named for what it does (STYLE.md, issue 8 section 1).

The check reads `runner/**/*.py` with `ast` (nothing is imported or run) and reports, as
`file:line: what`, every place outside `runner/store/` that holds SQL text or makes a peewee query:
`execute_sql`, `atomic`, a model's `select/update/insert/delete/get/get_or_none/create/...`, a
model instance's `save()`, the database's own transaction calls, and peewee's query-building names
(`peewee.fn`, `peewee.JOIN`, `peewee._savepoint`, ...; its exception classes are fine).

`ALLOWED` names what another helper is moving into the store right now, and the one permanent
exemption (the sandbox provider's own SQLite file). It only shrinks: an entry that no longer covers
anything is reported too, so that whoever moves the last statement out of it also deletes the entry.
"""
from __future__ import annotations

import ast
import importlib
import pathlib
import pkgutil
import re
from dataclasses import dataclass

import peewee

import runner.store

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "runner"

#: (file, function) -> why it may run SQL outside runner/store/ (the helper moving it, or the
#: permanent reason). The function is its qualified name ("Engine.claim_many"); None covers the
#: whole file.
ALLOWED: dict[tuple[str, str | None], str] = {
    # Permanent: the sandbox provider's own SQLite file (its state shared between processes), not
    # seqrun's store; it never goes to Postgres.
    ("runner/providers/sandbox_state.py", None): "the sandbox's own file",
}



def _model_names() -> frozenset[str]:
    """Every model class the store defines (models.py, and the tables of other store modules)."""
    names = set()
    for info in pkgutil.iter_modules(runner.store.__path__):
        module = importlib.import_module(f"runner.store.{info.name}")
        names |= {name for name, value in vars(module).items()
                  if isinstance(value, type) and issubclass(value, peewee.Model) and value.__module__ == module.__name__}
    return frozenset(names)


MODEL_NAMES = _model_names()
#: What a model class answers with a query (or a write).
MODEL_QUERIES = frozenset({
    "select", "update", "insert", "insert_many", "insert_from", "replace", "replace_many", "delete", "delete_by_id",
    "get", "get_or_none", "get_by_id", "get_or_create", "create", "bulk_create", "bulk_update", "raw", "noop",
    "create_table", "drop_table", "truncate_table",
})
#: The database's own calls that run SQL or control a transaction.
DATABASE_CALLS = frozenset({
    "execute_sql", "execute", "atomic", "transaction", "savepoint", "begin", "commit", "rollback",
    "in_transaction", "manual_commit", "connection",
})
#: Unmistakable whatever the receiver.
ANY_RECEIVER = frozenset({"execute_sql", "atomic", "delete_instance"})
#: `ctx.save()` and `self.save()` are the lead context's own method (runner.engine.flow.Ctx.save, which
#: calls the store); any other `.save()` is a peewee model instance writing its row.
OWN_SAVE = frozenset({"self", "ctx"})
SQL = re.compile(r"\b(SELECT\s.*\bFROM|INSERT\s+INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM|CREATE\s+(TABLE|INDEX)|"
                 r"PRAGMA\s+\w+|BEGIN\s+(IMMEDIATE|EXCLUSIVE|DEFERRED))\b", re.DOTALL)


@dataclass(frozen=True)
class Finding:
    path: str
    line: int
    function: str | None
    what: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.what}" + (f" (in {self.function})" if self.function else "")


class _Scanner(ast.NodeVisitor):
    def __init__(self, path: str) -> None:
        self.path = path
        self.scope: list[str] = []
        self.findings: list[Finding] = []
        self.docstrings: set[int] = set()

    def _found(self, node: ast.AST, what: str) -> None:
        function = ".".join(self.scope) or None
        self.findings.append(Finding(self.path, getattr(node, "lineno", 0), function, what))

    def _scoped(self, node: ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self._docstring(node)
        self.scope.append(node.name)
        self.generic_visit(node)
        self.scope.pop()

    visit_ClassDef = visit_FunctionDef = visit_AsyncFunctionDef = _scoped

    def visit_Module(self, node: ast.Module) -> None:
        self._docstring(node)
        self.generic_visit(node)

    def _docstring(self, node: ast.AST) -> None:
        body = getattr(node, "body", [])
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
            self.docstrings.add(id(body[0].value))

    def visit_Constant(self, node: ast.Constant) -> None:
        if isinstance(node.value, str) and id(node) not in self.docstrings and SQL.search(node.value):
            self._found(node, f"SQL text {node.value[:60]!r}")

    def visit_JoinedStr(self, node: ast.JoinedStr) -> None:
        text = "".join(part.value if isinstance(part, ast.Constant) else "{}" for part in node.values)
        if SQL.search(text):
            self._found(node, f"SQL text f{text[:60]!r}")
        else:
            self.generic_visit(node)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if isinstance(node.value, ast.Name) and node.value.id == "peewee" and not node.attr.endswith("Error"):
            self._found(node, f"peewee.{node.attr}")
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        if isinstance(func, ast.Attribute):
            receiver = func.value.id if isinstance(func.value, ast.Name) else None
            name = func.attr
            if name in ANY_RECEIVER:
                self._found(node, f".{name}()")
            elif receiver in MODEL_NAMES and name in MODEL_QUERIES:
                self._found(node, f"{receiver}.{name}()")
            elif receiver == "db" and name in DATABASE_CALLS:
                self._found(node, f"db.{name}()")
            elif name == "save" and receiver not in OWN_SAVE:
                self._found(node, ".save() of a model instance")
        self.generic_visit(node)


def scan(path: pathlib.Path) -> list[Finding]:
    relative = path.relative_to(ROOT).as_posix()
    scanner = _Scanner(relative)
    scanner.visit(ast.parse(path.read_text(encoding="utf-8"), filename=relative))
    return scanner.findings


def _allowance(finding: Finding) -> tuple[str, str | None] | None:
    for (place, function) in ALLOWED:
        in_place = finding.path == place or finding.path.startswith(place + "/")
        if in_place and (function is None or finding.function == function
                         or (finding.function or "").startswith(function + ".")):
            return place, function
    return None


def findings() -> list[Finding]:
    out: list[Finding] = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.relative_to(PACKAGE).parts[0] != "store":
            out += scan(path)
    return out


def test_no_sql_outside_the_store() -> None:
    outside = [str(f) for f in findings() if _allowance(f) is None]
    assert not outside, ("SQL or a peewee query outside runner/store/; move each into a store function named "
                         "for what it does:\n" + "\n".join(outside))


def test_the_allow_list_names_only_what_is_still_there() -> None:
    used = {_allowance(f) for f in findings()}
    stale = [f"{place}" + (f" {function}" if function else "") + f" ({owner})"
             for (place, function), owner in ALLOWED.items() if (place, function) not in used]
    assert not stale, ("these ALLOWED entries of tests/test_store_boundary.py cover nothing any more; "
                       "delete them:\n" + "\n".join(stale))


def _scan_text(source: str) -> list[str]:
    scanner = _Scanner("example.py")
    scanner.visit(ast.parse(source))
    return [f"{f.line}: {f.what}" for f in scanner.findings]


def test_the_check_sees_each_kind_of_statement() -> None:
    source = '''
"""SELECT x FROM y in a docstring is prose."""
import peewee
from runner.store import Enrollment, db

def f(ctx, enr, txn):
    db.execute_sql("SELECT id FROM enrollment")
    Enrollment.select().where(Enrollment.id == 1)
    Enrollment.get_or_none(Enrollment.id == 1)
    with db.atomic("IMMEDIATE"):
        enr.save()
    ctx.save()
    isinstance(txn, peewee._savepoint)
    sql = f"UPDATE enrollment SET due_at = ? WHERE id IN ({marks})"
    {}.get("key")
    raise peewee.IntegrityError("fine")
'''
    assert _scan_text(source) == [
        "7: .execute_sql()",
        "7: SQL text 'SELECT id FROM enrollment'",
        "8: Enrollment.select()",
        "9: Enrollment.get_or_none()",
        "10: .atomic()",
        "11: .save() of a model instance",
        "13: peewee._savepoint",
        "14: SQL text f'UPDATE enrollment SET due_at = ? WHERE id IN ({})'",
    ]
