"""Random AST mutations of Python programs that keep every top-level signature.

Pure functions of (program texts, ``random.Random``): the offline model seeds the RNG from the
cache key, so the same request and sample ordinal always give the same program.

Operators (each returns a short phrase for the idea sentence, or None if it found no site):
numeric constants scaled or shifted (iteration counts and loop bounds preferred, and pushed up
more often than down), tunable assignments (sample counts, temperatures) rescaled, comparison
and arithmetic operators swapped, statements deleted or duplicated, and crossover of a function
body from another program in the prompt that defines the same function.
"""

from __future__ import annotations

import ast
import copy
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = ("Mutation", "extract_blocks", "mutate_program", "signatures")

#: names whose numbers are counts/bounds worth tuning (iterations, samples, restarts ...)
_TUNABLE = re.compile(
    r"iter|step|round|epoch|restart|trial|sample|respon|n_|num|count|budget|size|temp|tries|"
    r"attempt|population|generation|beam|k$|^p$|prob|rate|alpha|cool",
    re.IGNORECASE,
)
_TEMPERATURE = re.compile(r"temp", re.IGNORECASE)


def _parses(code: str) -> bool:
    try:
        ast.parse(code)
    except (SyntaxError, ValueError):
        return False
    return True


def extract_blocks(text: str) -> list[str]:
    """Fenced Python blocks, in order, robust to programs that contain fences themselves.

    A program such as the STOP seed improver holds ```python lines inside a string literal, so
    the naive "opening fence to next fence" split cuts it apart. For each opening fence this
    takes the *longest* span up to a later fence line that parses as Python; if no span parses,
    the block is skipped up to the next fence (prose or another language).
    """
    lines = text.splitlines()
    fences = [i for i, line in enumerate(lines) if line.lstrip().startswith("```")]
    blocks: list[str] = []
    pos = 0
    while pos < len(fences):
        start = fences[pos]
        tag = lines[start].strip()[3:].strip().lower()
        if tag not in ("", "python", "py", "python3"):
            pos += 2
            continue
        chosen = None
        for end_pos in range(len(fences) - 1, pos, -1):
            end = fences[end_pos]
            if lines[end].strip() != "```":
                continue
            code = "\n".join(lines[start + 1 : end])
            if code.strip() and _parses(code):
                chosen = (end_pos, code)
                break
        if chosen is None:
            pos += 2
            continue
        blocks.append(chosen[1] + "\n")
        pos = chosen[0] + 1
    return blocks


def signatures(tree: ast.Module) -> dict[str, str]:
    """Top-level def name -> dump of its parameters (what must survive every mutation)."""
    out = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            out[node.name] = ast.dump(node.args)
    return out


@dataclass(frozen=True)
class Mutation:
    code: str
    idea: str
    operators: tuple[str, ...]


# --- site discovery ----------------------------------------------------------------------------


def _body_nodes(tree: ast.Module) -> list[ast.AST]:
    """Every node inside function bodies (and module-level statements), never inside
    parameter lists, so defaults and names of parameters are left alone."""
    out: list[ast.AST] = []

    def visit(node: ast.AST) -> None:
        for name, value in ast.iter_fields(node):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)) and name == "args":
                continue
            items = value if isinstance(value, list) else [value]
            for child in items:
                if isinstance(child, ast.AST):
                    out.append(child)
                    visit(child)

    visit(tree)
    return out


def _parents(tree: ast.AST) -> dict[int, ast.AST]:
    return {id(child): node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}


def _is_number(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool)


def _context_name(node: ast.AST, parents: dict[int, ast.AST]) -> str:
    """A name describing what a constant means: assigned variable, keyword, or call name."""
    cur: ast.AST | None = node
    for _ in range(4):
        parent = parents.get(id(cur)) if cur is not None else None
        if parent is None:
            return ""
        if isinstance(parent, ast.keyword) and parent.arg:
            return parent.arg
        if isinstance(parent, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = parent.targets if isinstance(parent, ast.Assign) else [parent.target]
            names = [t.id for t in targets if isinstance(t, ast.Name)]
            names += [t.attr for t in targets if isinstance(t, ast.Attribute)]
            return names[0] if names else ""
        if isinstance(parent, ast.Call):
            fn = parent.func
            return fn.id if isinstance(fn, ast.Name) else fn.attr if isinstance(fn, ast.Attribute) else ""
        if isinstance(parent, ast.stmt):
            return ""
        cur = parent
    return ""


# --- operators ---------------------------------------------------------------------------------


def _scale_number(value: int | float, rng: random.Random, *, tunable: bool, temperature: bool) -> int | float:
    if temperature and isinstance(value, float):
        return round(min(1.5, max(0.05, value * rng.choice([0.5, 0.7, 1.3, 1.6]))), 2)
    if isinstance(value, int):
        if tunable and value >= 2:
            factor = rng.choice([2, 2, 3, 5, 10, 0.5])
            return max(1, int(value * factor))
        return value + rng.choice([-1, 1, 1, 2]) if value not in (0,) else rng.choice([1, 2])
    if value == 0.0:
        return rng.choice([0.01, 0.1])
    return round(value * rng.choice([0.5, 0.8, 1.25, 2.0]), 6)


def _op_constant(tree: ast.Module, rng: random.Random, parents: dict[int, ast.AST]) -> str | None:
    sites = [n for n in _body_nodes(tree) if _is_number(n)]
    if not sites:
        return None
    names = {id(n): _context_name(n, parents) for n in sites}
    weights = [4.0 if _TUNABLE.search(names[id(n)] or "") or names[id(n)] == "range" else 1.0 for n in sites]
    node = rng.choices(sites, weights=weights)[0]
    assert isinstance(node, ast.Constant)
    name = names[id(node)]
    old = node.value
    assert isinstance(old, (int, float))  # _is_number chose it
    tunable = bool(_TUNABLE.search(name)) or name == "range"
    new = _scale_number(old, rng, tunable=tunable, temperature=bool(_TEMPERATURE.search(name)))
    if new == old:
        new = old + 1
    node.value = new
    where = f" for {name}" if name else ""
    return f"change the constant {old!r} to {new!r}{where}"


def _op_tunable_expr(tree: ast.Module, rng: random.Random, parents: dict[int, ast.AST]) -> str | None:
    """Rescale a non-constant count such as ``n = min(a, b)`` -> ``n = max(1, int(min(a, b) * f))``."""
    sites = []
    for node in _body_nodes(tree):
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name = node.targets[0].id
            if (
                _TUNABLE.search(name)
                and not _is_number(node.value)
                and isinstance(node.value, (ast.Call, ast.BinOp, ast.Name, ast.Attribute))
            ):
                sites.append((node, name))
    if not sites:
        return None
    node, name = rng.choice(sites)
    if _TEMPERATURE.search(name):
        factor = rng.choice([0.6, 0.8, 1.2, 1.4])
        node.value = ast.BinOp(left=node.value, op=ast.Mult(), right=ast.Constant(factor))
        return f"scale {name} by {factor}"
    factor = rng.choice([0.5, 1.5, 2.0])
    node.value = ast.Call(
        func=ast.Name("max", ast.Load()),
        args=[
            ast.Constant(1),
            ast.Call(ast.Name("int", ast.Load()), [ast.BinOp(node.value, ast.Mult(), ast.Constant(factor))], []),
        ],
        keywords=[],
    )
    return f"scale {name} by {factor}"


_CMP_SWAPS: dict[type, list[type]] = {
    ast.Lt: [ast.LtE, ast.Gt],
    ast.LtE: [ast.Lt],
    ast.Gt: [ast.GtE, ast.Lt],
    ast.GtE: [ast.Gt],
    ast.Eq: [ast.NotEq],
    ast.NotEq: [ast.Eq],
}
_BIN_SWAPS: dict[type, list[type]] = {
    ast.Add: [ast.Sub, ast.Mult],
    ast.Sub: [ast.Add],
    ast.Mult: [ast.Add, ast.FloorDiv],
    ast.Div: [ast.Mult],
    ast.FloorDiv: [ast.Div],
    ast.Pow: [ast.Mult],
}
_SYMBOL: dict[type, str] = {
    ast.Lt: "<",
    ast.LtE: "<=",
    ast.Gt: ">",
    ast.GtE: ">=",
    ast.Eq: "==",
    ast.NotEq: "!=",
    ast.Add: "+",
    ast.Sub: "-",
    ast.Mult: "*",
    ast.Div: "/",
    ast.FloorDiv: "//",
    ast.Pow: "**",
}


def _op_compare(tree: ast.Module, rng: random.Random, parents: dict[int, ast.AST]) -> str | None:
    sites = [
        (n, i)
        for n in _body_nodes(tree)
        if isinstance(n, ast.Compare)
        for i, op in enumerate(n.ops)
        if type(op) in _CMP_SWAPS
    ]
    if not sites:
        return None
    node, i = rng.choice(sites)
    assert isinstance(node, ast.Compare)
    old = type(node.ops[i])
    new = rng.choice(_CMP_SWAPS[old])
    node.ops[i] = new()
    return f"use {_SYMBOL[new]} instead of {_SYMBOL[old]} in a comparison"


def _op_arith(tree: ast.Module, rng: random.Random, parents: dict[int, ast.AST]) -> str | None:
    sites = [n for n in _body_nodes(tree) if isinstance(n, (ast.BinOp, ast.AugAssign)) and type(n.op) in _BIN_SWAPS]
    if not sites:
        return None
    node = rng.choice(sites)
    assert isinstance(node, (ast.BinOp, ast.AugAssign))
    old = type(node.op)
    new = rng.choice(_BIN_SWAPS[old])
    node.op = new()
    return f"use {_SYMBOL[new]} instead of {_SYMBOL[old]} in an update"


def _stmt_lists(tree: ast.Module) -> list[list[ast.stmt]]:
    lists = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Module):
            continue
        for fname in ("body", "orelse", "finalbody"):
            value = getattr(node, fname, None)
            if isinstance(value, list) and value and isinstance(value[0], ast.stmt):
                lists.append(value)
    return lists


def _removable(stmt: ast.stmt) -> bool:
    if isinstance(stmt, (ast.Return, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Global, ast.Nonlocal)):
        return False
    if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) and isinstance(stmt.value.value, str):
        return False  # docstrings
    return True


def _op_delete(tree: ast.Module, rng: random.Random, parents: dict[int, ast.AST]) -> str | None:
    sites = [(lst, i) for lst in _stmt_lists(tree) if len(lst) > 1 for i, s in enumerate(lst) if _removable(s)]
    if not sites:
        return None
    lst, i = rng.choice(sites)
    removed = lst.pop(i)
    return f"drop the statement `{_short(removed)}`"


def _op_duplicate(tree: ast.Module, rng: random.Random, parents: dict[int, ast.AST]) -> str | None:
    sites = [
        (lst, i)
        for lst in _stmt_lists(tree)
        for i, s in enumerate(lst)
        if _removable(s) and not isinstance(s, (ast.Import, ast.ImportFrom))
    ]
    if not sites:
        return None
    lst, i = rng.choice(sites)
    lst.insert(i + 1, copy.deepcopy(lst[i]))
    return f"repeat the statement `{_short(lst[i])}`"


def _short(stmt: ast.stmt) -> str:
    text = ast.unparse(stmt).splitlines()[0] if ast.unparse(stmt) else ""
    return text if len(text) <= 50 else text[:47] + "..."


Operator = Callable[[ast.Module, random.Random, dict[int, ast.AST]], "str | None"]

_OPERATORS: list[tuple[str, Operator, float]] = [
    ("constant", _op_constant, 5.0),
    ("tunable", _op_tunable_expr, 1.5),
    ("compare", _op_compare, 1.0),
    ("arith", _op_arith, 1.0),
    ("delete", _op_delete, 0.7),
    ("duplicate", _op_duplicate, 0.7),
]


def _crossover(tree: ast.Module, donors: list[ast.Module], rng: random.Random) -> str | None:
    """Take one same-named, same-signature top-level function body from another program."""
    mine = {n.name: n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
    options = []
    for donor in donors:
        for n in donor.body:
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name in mine:
                if ast.dump(n.args) == ast.dump(mine[n.name].args) and ast.dump(n) != ast.dump(mine[n.name]):
                    options.append(n)
    if not options:
        return None
    donor_fn = rng.choice(options)
    target = mine[donor_fn.name]
    target.body = copy.deepcopy(donor_fn.body)
    # bring along top-level imports and helper definitions the donor relies on
    have = {ast.dump(s) for s in tree.body}
    helper_names = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
    for donor in donors:
        if donor_fn in donor.body:
            extras: list[ast.stmt] = [
                s for s in donor.body if isinstance(s, (ast.Import, ast.ImportFrom)) and ast.dump(s) not in have
            ]
            extras += [
                s
                for s in donor.body
                if isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and s.name not in helper_names
            ]
            tree.body[0:0] = [copy.deepcopy(s) for s in extras if isinstance(s, (ast.Import, ast.ImportFrom))]
            tree.body.extend(copy.deepcopy(s) for s in extras if not isinstance(s, (ast.Import, ast.ImportFrom)))
    return f"take the body of {donor_fn.name} from another program"


def mutate_program(source: str, rng: random.Random, *, donors: Sequence[str] = (), max_ops: int = 3) -> Mutation | None:
    """A mutated, compilable variant of ``source`` with the same top-level signatures.

    Returns None if ``source`` does not parse. Tries a few times to produce a program that
    differs from the input; the last resort is the input itself (normalised by ``ast.unparse``).
    """
    try:
        original = ast.parse(source)
    except (SyntaxError, ValueError):
        return None
    sig = signatures(original)
    baseline = ast.unparse(original)
    donor_trees = []
    for d in donors:
        try:
            donor_trees.append(ast.parse(d))
        except (SyntaxError, ValueError):
            continue
    for _ in range(8):
        tree = copy.deepcopy(original)
        done: list[str] = []
        names: list[str] = []
        if donor_trees and rng.random() < 0.5:
            phrase = _crossover(tree, donor_trees, rng)
            if phrase:
                done.append(phrase)
                names.append("crossover")
        k = rng.randint(1, max_ops)
        for _ in range(k):
            name, op, _w = rng.choices(_OPERATORS, weights=[w for _, _, w in _OPERATORS])[0]
            phrase = op(tree, rng, _parents(tree))
            if phrase:
                done.append(phrase)
                names.append(name)
        if not done:
            continue
        ast.fix_missing_locations(tree)
        try:
            code = ast.unparse(tree)
            compile(code, "<mutant>", "exec")
            if signatures(ast.parse(code)) != sig:
                continue
        except (SyntaxError, ValueError, RecursionError):
            continue
        if code != baseline:
            return Mutation(code=code, idea="; ".join(done), operators=tuple(names))
    return Mutation(code=baseline, idea="keep the program as it is", operators=())
