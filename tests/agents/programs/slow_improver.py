"""A slow honest improver (test fixture): one utility call, then a pause long enough for a test
to kill the sandbox runner that is running it; returns its input."""

import time


def improve_algorithm(initial_solution, utility, language_model):
    utility(initial_solution)
    time.sleep(4)
    return initial_solution
