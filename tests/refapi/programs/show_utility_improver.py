import json


def improve_algorithm(initial_solution, utility, language_model):
    """Returns what it was shown, verbatim, as its 'program' (a probe, not an improver)."""
    return json.dumps({"str": utility.str, "description": utility.description, "budget": utility.budget})
