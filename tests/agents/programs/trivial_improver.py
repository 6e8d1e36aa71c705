"""An honest trivial improver (test fixture): returns the initial solution unchanged."""


def improve_algorithm(initial_solution, utility, language_model):
    return initial_solution
