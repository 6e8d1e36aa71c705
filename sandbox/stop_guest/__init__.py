"""The guest runtime: stdlib-only code loaded by every sandbox worker (numpy is optional).

It is imported by the worker interpreter under the top-level name ``stop_guest`` (the host binds
this directory read-only into the sandbox), and by the host as ``sandbox.stop_guest`` for the
few pieces both sides share (frame format, Landlock probing). Nothing here may import the host's
packages: inside the sandbox they do not exist.
"""

import os as _os
import sys as _sys

if __name__ == "stop_guest":  # in the guest only: the host's import path stays as it is
    _PATH = _os.path.join(_os.path.dirname(__file__), "pythonpath")
    if _PATH not in _sys.path:
        _sys.path.append(_PATH)
