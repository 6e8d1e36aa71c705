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
    """``utility(solution_text, mode="val") -> float``, evaluated by the host on training instances.

    As in the STOP reference: ``budget`` is the fixed total, ``uses`` the calls made (the host's
    count), ``remaining`` their difference. All are read-only here; the host keeps and enforces
    the real count, so nothing written in the guest changes what the host allows.
    """

    __slots__ = ("_budget", "_channel", "_description", "_text", "_uses")
    _budget: int
    _channel: Channel
    _description: _Str
    _text: _Str
    _uses: int

    def __init__(self, channel: Channel, description: str, budget: int, text: str = "") -> None:
        object.__setattr__(self, "_channel", channel)
        object.__setattr__(self, "_description", description)
        object.__setattr__(self, "_text", text or description)
        object.__setattr__(self, "_budget", int(budget))
        object.__setattr__(self, "_uses", 0)

    def __setattr__(self, name: _Str, value: Any) -> None:
        raise AttributeError(f"utility.{name} is read-only: budgets are kept by the host")

    def __delattr__(self, name: _Str) -> None:
        raise AttributeError(f"utility.{name} is read-only: budgets are kept by the host")

    @property
    def description(self) -> _Str:
        return self._description

    @property
    def str(self) -> _Str:  # the STOP reference exposes the visible utility's program text as ``.str``
        return self._text

    @property
    def budget(self) -> int:
        """The total number of calls allowed (fixed)."""
        return self._budget

    @property
    def uses(self) -> int:
        """Calls the host has counted so far."""
        return self._uses

    @property
    def remaining(self) -> int:
        return max(0, self._budget - self._uses)

    def __call__(self, solution: Any, mode: _Str = "val") -> float:
        if mode not in ("val", "train"):
            raise ValueError(f"utility(mode={mode!r}): only 'val' (or 'train') is available to improvers")
        if solution is None or solution == "":
            return 0.0  # the reference's rule: no program scores 0, without a run or a use
        if not isinstance(solution, _Str):
            raise TypeError("utility() takes the solution's program text (str)")
        value = self._channel.request("utility", {"solution": solution})
        object.__setattr__(self, "_uses", self._uses + 1)
        return float(value)

    def __repr__(self) -> _Str:
        return f"<utility: budget {self._budget}, {self._uses} used>"


class LanguageModel:
    """``prompt``/``batch_prompt`` as in the STOP reference interface.

    ``budget`` is the fixed total of calls, ``times_used`` the calls the host counted,
    ``remaining`` their difference; a refused call (past the budget, too many responses) or an
    empty batch is not counted, here as on the host.
    """

    __slots__ = ("_budget", "_channel", "_max", "_used")
    _budget: int
    _channel: Channel
    _max: int
    _used: int

    def __init__(self, channel: Channel, budget: int, max_responses_per_call: int) -> None:
        object.__setattr__(self, "_channel", channel)
        object.__setattr__(self, "_budget", int(budget))
        object.__setattr__(self, "_max", int(max_responses_per_call))
        object.__setattr__(self, "_used", 0)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"language_model.{name} is read-only: budgets are kept by the host")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"language_model.{name} is read-only: budgets are kept by the host")

    @property
    def budget(self) -> int:
        return self._budget

    @property
    def times_used(self) -> int:
        return self._used

    @property
    def remaining(self) -> int:
        return max(0, self._budget - self._used)

    @property
    def max_responses_per_call(self) -> int:
        return self._max

    def _count(self) -> None:
        object.__setattr__(self, "_used", self._used + 1)

    def prompt(self, expertise: str, message: str, n_responses: int = 1, temperature: float = 0.7) -> list[str]:
        n = int(n_responses)
        data = self._channel.request(
            "lm.prompt",
            {
                "expertise": str(expertise),
                "message": str(message),
                "n_responses": n,
                "temperature": float(temperature),
            },
        )
        if n > 0:
            self._count()
        return [str(x) for x in data]

    def batch_prompt(
        self, expertise: str, message_batch: Any = None, temperature: float = 0.7, *, messages: Any = None
    ) -> list[str]:
        batch = message_batch if message_batch is not None else messages
        if batch is None:
            return []
        if isinstance(batch, str):
            batch = [batch]
        try:
            batch = [str(m) for m in batch]
        except TypeError:
            return []
        if not batch:
            return []
        data = self._channel.request(
            "lm.batch_prompt",
            {"expertise": str(expertise), "messages": batch, "temperature": float(temperature)},
        )
        self._count()
        return [str(x) for x in data]

    def __repr__(self) -> str:
        return f"<language_model: budget {self._budget}, {self._used} used>"
