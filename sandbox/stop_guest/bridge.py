"""Guest side of the request channel: ``utility`` and ``language_model`` proxies.

Requests are frames on the child's result pipe (fd 3); answers come back on fd 4. Calls are
thread-safe: each request carries an id, one reader thread hands each answer to the thread that
asked. Budgets live on the host; the numbers visible here are a read-only courtesy view that
the host's answers cannot be influenced by.
"""

from __future__ import annotations

import json
import threading
from builtins import str as _Str
from typing import Any

from . import frames

REQUEST_FD = 3
ANSWER_FD = 4


class BridgeError(Exception):
    """The host refused a request (for example, the budget is spent)."""


class Channel:
    def __init__(self, write_lock: threading.Lock, request_fd: int = REQUEST_FD, answer_fd: int = ANSWER_FD) -> None:
        self._write_lock = write_lock
        self._request_fd = request_fd
        self._answer_fd = answer_fd
        self._lock = threading.Lock()
        self._next_id = 0
        self._waiting: dict[int, list[Any]] = {}
        self._reader: threading.Thread | None = None
        self._closed: str | None = None

    def request(self, kind: str, body: dict[str, Any]) -> Any:
        event = threading.Event()
        slot: list[Any] = [event, None]
        with self._lock:
            if self._closed is not None:
                raise BridgeError(self._closed)
            rid = self._next_id
            self._next_id += 1
            self._waiting[rid] = slot
            if self._reader is None:
                self._reader = threading.Thread(target=self._read_answers, daemon=True, name="stop-bridge")
                self._reader.start()
        frame = json.dumps(
            {"t": "req", "id": rid, "kind": kind, "body": body}, separators=(",", ":"), allow_nan=False
        ).encode()
        with self._write_lock:
            frames.write_frame(self._request_fd, frame)
        event.wait()
        answer = slot[1]
        if not answer.get("ok"):
            raise BridgeError(str(answer.get("error", "request refused")))
        return answer.get("data")

    def _read_answers(self) -> None:
        reason = "the host closed the request channel"
        try:
            while True:
                raw = frames.read_frame(self._answer_fd, 64 << 20)
                if raw is None:
                    break
                answer = json.loads(raw)
                with self._lock:
                    slot = self._waiting.pop(int(answer["id"]), None)
                if slot is not None:
                    slot[1] = answer
                    slot[0].set()
        except Exception as exc:  # the channel is unusable; fail every waiter with the reason
            reason = f"request channel failed: {exc!r}"
        with self._lock:
            self._closed = reason
            waiting, self._waiting = self._waiting, {}
        for slot in waiting.values():
            slot[1] = {"ok": False, "error": reason}
            slot[0].set()


class Utility:
    """``utility(solution_text) -> float``, evaluated by the host on training instances."""

    def __init__(self, channel: Channel, description: str, budget: int) -> None:
        self.__channel = channel
        self.__description = description
        self.__remaining = budget

    @property
    def description(self) -> str:
        return self.__description

    @property
    def str(self) -> str:  # the STOP reference exposes the utility's source text as ``.str``
        return self.__description

    @property
    def budget(self) -> int:
        """Remaining calls as seen from here (the host keeps the real count)."""
        return self.__remaining

    def __call__(self, solution: _Str) -> float:
        if not isinstance(solution, str):
            raise TypeError("utility() takes the solution's program text (str)")
        self.__remaining = max(0, self.__remaining - 1)
        return float(self.__channel.request("utility", {"solution": solution}))

    def __repr__(self) -> _Str:
        return f"<utility: {self.__description[:60]!r}>"


class LanguageModel:
    """``prompt``/``batch_prompt`` as in the STOP reference interface."""

    def __init__(self, channel: Channel, budget: int, max_responses_per_call: int) -> None:
        self.__channel = channel
        self.__remaining = budget
        self.__max = max_responses_per_call

    @property
    def budget(self) -> int:
        return self.__remaining

    @property
    def max_responses_per_call(self) -> int:
        return self.__max

    def prompt(self, expertise: str, message: str, n_responses: int = 1, temperature: float = 0.7) -> list[str]:
        self.__remaining = max(0, self.__remaining - 1)
        data = self.__channel.request(
            "lm.prompt",
            {
                "expertise": str(expertise),
                "message": str(message),
                "n_responses": int(n_responses),
                "temperature": float(temperature),
            },
        )
        return [str(x) for x in data]

    def batch_prompt(self, expertise: str, messages: list[str], temperature: float = 0.7) -> list[str]:
        if isinstance(messages, str):
            messages = [messages]
        self.__remaining = max(0, self.__remaining - 1)
        data = self.__channel.request(
            "lm.batch_prompt",
            {"expertise": str(expertise), "messages": [str(m) for m in messages], "temperature": float(temperature)},
        )
        return [str(x) for x in data]

    def __repr__(self) -> str:
        return "<language_model>"
