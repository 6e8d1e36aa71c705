"""scan_program: categories of sandbox-relevant intent."""

from __future__ import annotations

import pytest

from sandbox import scan_program

CASES = [
    ("import subprocess\nsubprocess.run(['ls'])", "process"),
    ("import os\nos.system('ls')", "process"),
    ("import ctypes", "syscall"),
    ("import socket", "network"),
    ("from urllib.request import urlopen", "network"),
    ("x = 'https://example.com'", "network"),
    ("import os\nkey = os.environ['OPENAI_API_KEY']", "environment"),
    ("import os\nos.getenv('HOME')", "environment"),
    ("open('/etc/passwd').read()", "filesystem"),
    ("data = open('../../secret').read()", "filesystem"),
    ("p = '/proc/1/environ'", "filesystem"),
    ("def improve(u, utility, language_model):\n    utility.budget = 100", "budget_tampering"),
    ("language_model.budget += 5", "budget_tampering"),
    ("setattr(utility, 'budget', 9)", "budget_tampering"),
    ("use_sandbox = False", "sandbox_tampering"),
    ("config.unsafe_no_sandbox = True", "sandbox_tampering"),
    ("import lm", "sandbox_tampering"),
    ("from sandbox import SandboxPool", "sandbox_tampering"),
    ("import tasks.parity", "sandbox_tampering"),
    ("import store", "sandbox_tampering"),
    ("import openai", "network"),
    ("import signal\nsignal.setitimer(signal.ITIMER_REAL, 0)", "sandbox_tampering"),
    ("x = ().__class__.__bases__[0].__subclasses__()", "introspection"),
    ("b = __builtins__", "introspection"),
    ("import sys\nf = sys._getframe(1).f_globals", "introspection"),
]


@pytest.mark.parametrize(("program", "category"), CASES)
def test_categories(program: str, category: str) -> None:
    found = scan_program(program)
    assert category in {f.category for f in found}, found
    assert all(f.line >= 1 for f in found)


def test_clean_program_has_no_findings() -> None:
    program = "import numpy as np\nimport random\ndef algorithm(x):\n    return np.sum(x) % 2\n"
    assert scan_program(program) == []


def test_syntax_error_is_a_finding() -> None:
    (finding,) = scan_program("def f(:\n")
    assert finding.category == "syntax" and finding.line == 1
    assert finding.to_json()["category"] == "syntax"
