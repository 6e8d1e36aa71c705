"""The fake endpoint's identity model: the program it was shown comes back, fenced, n times."""

from __future__ import annotations

import json
import urllib.request

from lm.fake_server import IDENTITY, FakeOpenAIServer, identity_reply
from tasks.meta import SEED_IMPROVER

FENCE = "`" * 3


def _extract(text: str) -> str:
    block = text.split(FENCE)[1]
    return block.split("\n", 1)[1]


def test_identity_returns_the_largest_fenced_program_n_times() -> None:
    program = "def f(x):\n    return x + 1\n"
    message = f"Improve this:\n{FENCE}python\n{program}{FENCE}\nand this small one:\n{FENCE}\nx\n{FENCE}\n"
    body = {
        "model": "m",
        "n": 3,
        "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": message}],
    }
    with FakeOpenAIServer(IDENTITY, latency=0.01) as srv:
        req = urllib.request.Request(
            f"{srv.base_url}/chat/completions", json.dumps(body).encode(), {"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            reply = json.loads(resp.read())
    texts = [c["message"]["content"] for c in reply["choices"]]
    assert len(texts) == 3 and len(set(texts)) == 1
    assert _extract(texts[0]) == program


def test_identity_of_the_seed_improver_prompt_is_the_seed_improver() -> None:
    """The improver's own prompt: the program shown (the seed improver itself, which holds no
    fence) is what the seed improver's extract_code gets back."""
    namespace: dict[str, object] = {}
    exec(SEED_IMPROVER, namespace)
    message = f"Improve the following solution:\n{FENCE}python\n{SEED_IMPROVER}\n{FENCE}\n\nYou will be evaluated"
    reply = identity_reply({"messages": [{"role": "user", "content": message}]})
    extract = namespace["extract_code"]
    assert callable(extract)
    assert extract(reply).strip() == SEED_IMPROVER.strip()
    assert identity_reply({"messages": [{"role": "user", "content": "no block"}]}).count(FENCE) == 2
