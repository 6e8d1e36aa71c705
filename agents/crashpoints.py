"""Named crash points for the crash-resume tests: the process kills itself at an exact moment.

Set ``STOP_CRASH_POINT=<name>`` and ``STOP_CRASH_AFTER=<n>`` in the host environment (never
reachable from the sandbox, whose environment is empty) and the n-th time this process passes
that point it sends itself SIGKILL: no cleanup, exactly like a power cut or an OOM kill. Unset,
a crash point costs one dictionary lookup.

The pass counter is process state on purpose (the n-th pass *of this process*, whichever run
or agent passes): it belongs to the process being killed, not to a run, and holds no run data.
"""

from __future__ import annotations

import os
import signal
from collections import Counter

__all__ = ("POINTS", "crash_point")

#: The windows worth testing: an answer in hand but not yet in the log.
POINTS = (
    "proposer.before_announce",  # the LM replied; the reply and its event are not written yet
    "runner.batch.before_record",  # sandbox jobs finished; their results are not written yet
    "runner.session.before_record",  # an improver returned; its outcome is not written yet
)

_passed: Counter[str] = Counter()


def crash_point(name: str) -> None:
    if os.environ.get("STOP_CRASH_POINT") != name:
        return
    _passed[name] += 1
    if _passed[name] >= int(os.environ.get("STOP_CRASH_AFTER", "1")):
        os.kill(os.getpid(), signal.SIGKILL)
