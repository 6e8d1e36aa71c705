"""The guest runtime: stdlib-only code loaded by every sandbox worker (numpy is optional).

It is imported by the worker interpreter under the top-level name ``stop_guest`` (the host binds
this directory read-only into the sandbox), and by the host as ``sandbox.stop_guest`` for the
few pieces both sides share (frame format, Landlock probing). Nothing here may import the host's
packages: inside the sandbox they do not exist.
"""
