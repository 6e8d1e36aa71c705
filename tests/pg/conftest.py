"""The PostgreSQL tests: every test here uses the session's real server (tests/pgserver.py)."""

from __future__ import annotations

import sys
from pathlib import Path

# The agents tests' helpers (CLI in a subprocess, programs) serve these tests too.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "agents"))
