"""STOP command line."""
