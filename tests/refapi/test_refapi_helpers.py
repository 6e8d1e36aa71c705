"""The guest's ``helpers.extract_code`` behaves as the STOP reference's on a table of cases."""

from __future__ import annotations

from typing import Any

import pytest

from sandbox._scan import scan_program
from sandbox.stop_guest.pythonpath.helpers import extract_code

F = "`" * 3

CASES: list[tuple[str, Any, Any]] = [
    ("one tagged block", f"idea\n{F}python\nx = 1\n{F}\nbye", "x = 1"),
    ("largest of two", f"{F}python\na\n{F}\n{F}python\nbbb\nccc\n{F}", "bbb\nccc"),
    ("first of equal size wins", f"{F}python\naa\n{F}\n{F}python\nbb\n{F}", "aa"),
    (
        "nested fences kept whole",
        f"{F}python\ns = '''\n{F}python\ninner\n{F}\n'''\n{F}\n",
        f"s = '''\n{F}python\ninner\n{F}\n'''",
    ),
    ("no block", "just prose, no code", None),
    ("unclosed block", f"{F}python\nx = 1\n", None),
    ("empty block", f"{F}python\n{F}", None),
    ("untagged block", f"{F}\nx = 2\n{F}", "x = 2"),
    ("indented fence is not a fence", f"{F}python\n  {F}\nx\n{F}", f"  {F}\nx"),
    ("list maps element-wise, None kept", [f"{F}py\na\n{F}", None, "prose"], ["a", None, None]),
    ("None", None, None),
]


@pytest.mark.parametrize(("name", "text", "expected"), CASES, ids=[c[0] for c in CASES])
def test_extract_code_table(name: str, text: Any, expected: Any) -> None:
    assert extract_code(text) == expected


def test_importing_helpers_is_not_flagged_but_stop_guest_still_is() -> None:
    assert scan_program("from helpers import extract_code\nimport helpers\n") == []
    cats = {f.category for f in scan_program("from stop_guest.helpers import extract_code\n")}
    assert "sandbox_tampering" in cats
