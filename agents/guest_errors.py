"""What a failed improver session tells its user: the traceback of the improver's own code.

The guest reports the whole traceback, sandbox frames included (``/opt/stop/stop_guest/...``).
A user needs the frames of the program that failed, so only those are kept (the sandbox compiles
the program as ``<candidate>``), with the exception lines and any chained exceptions.
"""

from __future__ import annotations

__all__ = ("PROGRAM_FILENAME", "improver_traceback")

#: The file name the sandbox compiles untrusted programs under.
PROGRAM_FILENAME = "<candidate>"
#: Lines kept from the end (deep recursion makes very long tracebacks).
MAX_LINES = 40


def improver_traceback(text: str | None, *, max_lines: int = MAX_LINES) -> str | None:
    """``text`` without the frames of code other than the improver's; None if nothing is left."""
    if not text or not text.strip():
        return None
    kept: list[str] = []
    in_frame = keep_frame = False
    for line in text.splitlines():
        if line.startswith('  File "'):
            in_frame, keep_frame = True, line.startswith(f'  File "{PROGRAM_FILENAME}"')
        elif in_frame and line.startswith("    "):
            pass  # the frame's source line and carets: kept with their frame
        else:
            in_frame = False
            kept.append(line)
            continue
        if keep_frame:
            kept.append(line)
    if len(kept) > max_lines:
        kept = ["...", *kept[-max_lines:]]
    out = "\n".join(kept).strip("\n")
    return out + "\n" if out else None
