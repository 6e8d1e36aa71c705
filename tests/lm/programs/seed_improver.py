from helpers import extract_code


def improve_algorithm(initial_solution, utility, language_model):
    """Ask for several rewrites of a program and keep the one the utility scores highest."""
    role = "You write fast, correct Python and you are good at inventing better algorithms."
    request = f"""Here is a program to make better:
```python
{initial_solution}
```

It is scored by this function:
```python
{utility.str}
```

Reply with one complete improved program in a python code block, after a short plan."""
    n_messages = min(language_model.max_responses_per_call, utility.budget)
    replies = language_model.batch_prompt(role, [request] * n_messages, temperature=0.7)
    candidates = [code for code in extract_code(replies) if code]
    return max(candidates, key=utility) if candidates else initial_solution
