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
    """``utility(solution_text) -> float``, evaluated by the host on training instances.

    As in the STOP reference: ``budget`` is the fixed number of calls allowed, ``uses`` the calls
    made (``remaining`` is their difference), ``utility(None)`` and ``utility("")`` are 0.0, and
    ``mode`` may name the visible splits only. The host keeps the real count: a call past the
    budget is refused there (recorded as ``budget.exceeded``) and raised here as a ``BridgeError``
    naming the budget; nothing written here changes what the host allows.
    """

    _VISIBLE_MODES = (None, "train", "val", "validation")

    def __init__(self, channel: Channel, description: str, budget: int) -> None:
        self.__channel = channel
        self.__description = description
        self.__budget = budget
        self.__uses = 0

    @property
    def description(self) -> _Str:
        return self.__description

    @property
    def str(self) -> _Str:  # the STOP reference exposes the utility's source text as ``.str``
        return self.__description

    @property
    def budget(self) -> int:
        """The number of calls allowed in all (fixed, as in the reference)."""
        return self.__budget

    @property
    def uses(self) -> int:
        """Calls made so far (calls the host answered)."""
        return self.__uses

    @property
    def remaining(self) -> int:
        return max(0, self.__budget - self.__uses)

    def __call__(self, solution: _Str | None, mode: _Str | None = None) -> float:
        if mode not in self._VISIBLE_MODES:
            raise ValueError(f"utility mode {mode!r} is not available to an improver (use 'train' or 'val')")
        if solution is None or (isinstance(solution, _Str) and not solution.strip()):
            return 0.0
        if not isinstance(solution, _Str):
            raise TypeError("utility() takes the solution's program text (str)")
        value = float(self.__channel.request("utility", {"solution": solution}))
        object.__setattr__(self, "_Utility__uses", self.__uses + 1)
        return value

    def __setattr__(self, name: _Str, value: Any) -> None:
        if name.startswith("_Utility__") and name not in self.__dict__:
            object.__setattr__(self, name, value)
            return
        raise AttributeError(f"utility.{name} is read-only (budgets are kept by the host)")

    def __repr__(self) -> _Str:
        return f"<utility: {self.__description[:60]!r}>"


class LanguageModel:
    """``prompt``/``batch_prompt`` as in the STOP reference interface.

    ``budget`` is the fixed number of calls allowed and ``times_used`` the calls made (as in the
    reference); ``remaining`` is their difference. An empty batch is no call. The host keeps the
    real count and refuses calls past the budget.
    """

    def __init__(self, channel: Channel, budget: int, max_responses_per_call: int) -> None:
        self.__channel = channel
        self.__budget = budget
        self.__used = 0
        self.__max = max_responses_per_call

    @property
    def budget(self) -> int:
        return self.__budget

    @property
    def times_used(self) -> int:
        return self.__used

    @property
    def remaining(self) -> int:
        return max(0, self.__budget - self.__used)

    @property
    def max_responses_per_call(self) -> int:
        return self.__max

    def prompt(self, expertise: _Str, message: _Str, n_responses: int = 1, temperature: float = 0.7) -> list[_Str]:
        data = self.__channel.request(
            "lm.prompt",
            {
                "expertise": _Str(expertise),
                "message": _Str(message),
                "n_responses": int(n_responses),
                "temperature": float(temperature),
            },
        )
        object.__setattr__(self, "_LanguageModel__used", self.__used + 1)
        return [_Str(x) for x in data]

    def batch_prompt(
        self,
        expertise: _Str,
        message_batch: list[_Str] | _Str | None = None,
        temperature: float = 0.7,
        *,
        messages: list[_Str] | _Str | None = None,
    ) -> list[_Str]:
        batch = message_batch if message_batch is not None else messages
        if batch is None:
            raise TypeError("batch_prompt() needs message_batch (a list of prompts)")
        if isinstance(batch, _Str):
            batch = [batch]
        if not batch:
            return []
        data = self.__channel.request(
            "lm.batch_prompt",
            {"expertise": _Str(expertise), "messages": [_Str(m) for m in batch], "temperature": float(temperature)},
        )
        object.__setattr__(self, "_LanguageModel__used", self.__used + 1)
        return [_Str(x) for x in data]

    def __setattr__(self, name: _Str, value: Any) -> None:
        if name.startswith("_LanguageModel__") and name not in self.__dict__:
            object.__setattr__(self, name, value)
            return
        raise AttributeError(f"language_model.{name} is read-only (budgets are kept by the host)")

    def __repr__(self) -> _Str:
        return "<language_model>"
