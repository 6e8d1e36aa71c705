from helpers import extract_code


def improve_algorithm(initial_solution, utility, language_model):
    """An improver in the reference's style: it keeps its own books against the fixed budgets."""
    expertise = "You are an expert programmer."
    message = "Improve this program:\n" + initial_solution + "\n\nScored by:\n" + utility.str
    best, best_score = initial_solution, utility(initial_solution)
    while language_model.times_used < language_model.budget:
        replies = language_model.batch_prompt(expertise, [message] * language_model.max_responses_per_call, 0.7)
        for code in extract_code(replies):
            if utility.uses >= utility.budget:
                break
            score = utility(code)
            if score > best_score:
                best, best_score = code, score
    return best
