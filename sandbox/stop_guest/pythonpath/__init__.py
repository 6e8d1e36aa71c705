"""Modules improvers import by their top-level names inside the sandbox (``from helpers import extract_code``).

The guest runtime puts this directory on ``sys.path`` (see ``stop_guest/__init__.py``); the host
imports the same files as ``sandbox.stop_guest.pythonpath.*`` (tests only).
"""
