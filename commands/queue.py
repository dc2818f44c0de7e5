"""Per-user limits and one fair queue in front of the GPU.

Fair means round robin across users: the next slot goes to the waiting user served longest ago (never
served first, then by arrival). With A's three requests and B's one waiting, B's runs second, not
fourth. A user at their running limit is skipped without losing their place. Positions are recomputed
in one pass, once per turn of the event loop however many requests arrived in it (a burst of 200 costs one
pass, not 200), or at once when someone reads a position.

Everything runs on the event loop's thread (no locks): `reserve` is synchronous so a front end can
refuse a request before acknowledging it.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from commands.errors import MemberError
from gpu_service.errors import GpuBusy

PositionCallback = Callable[[int], None]


class LimitReached(MemberError):
    """The member already has as many requests in flight as they may."""


@dataclass(frozen=True)
class QueueLimits:
    max_running_per_user: int = 1
    max_waiting_per_user: int = 3
    concurrency: int = 4  # requests on the GPU at once, all users together
    max_wait_s: float = 600.0  # a request that waits longer is given up (GpuBusy)


class Ticket:
    """One request's place: waiting (position >= 1), then running (position 0), then released."""

    def __init__(self, queue: FairQueue, user_id: str, number: int) -> None:
        self.queue = queue
        self.user_id = user_id
        self.number = number
        self._position = 0
        self.on_position: PositionCallback | None = None
        self._turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.released = False

    @property
    def position(self) -> int:
        """1 = next; 0 once running."""
        self.queue._renumber_if_stale()
        return self._position

    @property
    def running(self) -> bool:
        return self._turn.done() and not self.released

    async def wait_turn(self, on_position: PositionCallback | None = None) -> None:
        """Until this request may use the GPU; gives up after the queue's max_wait_s (GpuBusy)."""
        self.on_position = on_position
        if on_position is not None and not self._turn.done():
            on_position(self.position)
        try:
            async with asyncio.timeout(self.queue.limits.max_wait_s):
                await asyncio.shield(self._turn)
        except TimeoutError:
            self.release()
            minutes = self.queue.limits.max_wait_s / 60
            raise GpuBusy(f"The queue did not move for {minutes:g} minutes.") from None
        except BaseException:
            self.release()
            raise
        finally:
            self.on_position = None

    def release(self) -> None:
        """Give the place (or the GPU slot) back. Idempotent."""
        if not self.released:
            self.released = True
            self.queue._release(self)

    async def __aenter__(self) -> Ticket:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.release()

    def _grant(self) -> None:
        self._position = 0
        self._turn.set_result(None)

    def _move_to(self, position: int) -> None:
        if position != self._position:
            self._position = position
            if self.on_position is not None:
                self.on_position(position)


class FairQueue:
    def __init__(self, limits: QueueLimits, *, noun: str = "requests") -> None:
        self.limits = limits
        self.noun = noun
        self._waiting: dict[str, deque[Ticket]] = {}
        self._running: dict[str, int] = {}
        # When each user with work in flight was last given a slot; forgotten once they have none.
        self._last_served: dict[str, int] = {}
        self._numbers = itertools.count(1)
        self._grants = itertools.count(1)
        self._stale = False  # positions need a pass; one is scheduled

    @property
    def running_count(self) -> int:
        return sum(self._running.values())

    @property
    def waiting_count(self) -> int:
        return sum(len(tickets) for tickets in self._waiting.values())

    def in_flight(self, user_id: str) -> int:
        return self._running.get(user_id, 0) + len(self._waiting.get(user_id, ()))

    def reserve(self, user_id: str) -> Ticket:
        """A place in the queue, or LimitReached when the member has too many in flight."""
        allowed = self.limits.max_running_per_user + self.limits.max_waiting_per_user
        if self.in_flight(user_id) >= allowed:
            raise LimitReached(
                f"You already have {self.in_flight(user_id)} {self.noun} in progress (the limit is "
                f"{self.limits.max_running_per_user} running and {self.limits.max_waiting_per_user} "
                "waiting). Please wait for one to finish."
            )
        ticket = Ticket(self, user_id, next(self._numbers))
        self._waiting.setdefault(user_id, deque()).append(ticket)
        self._pump()
        return ticket

    def _release(self, ticket: Ticket) -> None:
        if ticket._turn.done():
            self._running[ticket.user_id] -= 1
            if not self._running[ticket.user_id]:
                del self._running[ticket.user_id]
        else:
            tickets = self._waiting.get(ticket.user_id)
            if tickets is not None and ticket in tickets:
                tickets.remove(ticket)
                if not tickets:
                    del self._waiting[ticket.user_id]
            ticket._turn.cancel()
        if not self.in_flight(ticket.user_id):
            self._last_served.pop(ticket.user_id, None)
        self._pump()

    def _pump(self) -> None:
        """Start waiting tickets while there are free slots, then tell everyone their new place."""
        while self.running_count < self.limits.concurrency:
            user_id = self._next_user()
            if user_id is None:
                break
            tickets = self._waiting[user_id]
            ticket = tickets.popleft()
            if not tickets:
                del self._waiting[user_id]
            self._running[user_id] = self._running.get(user_id, 0) + 1
            self._last_served[user_id] = next(self._grants)
            ticket._grant()
        if not self._stale:
            self._stale = True
            asyncio.get_running_loop().call_soon(self._renumber_if_stale)

    def _renumber_if_stale(self) -> None:
        if self._stale:
            self._stale = False
            self._renumber()

    def _turn_order(self, user_id: str) -> tuple[int, int]:
        return self._last_served.get(user_id, 0), self._waiting[user_id][0].number

    def _next_user(self) -> str | None:
        eligible = [user for user in self._waiting
                    if self._running.get(user, 0) < self.limits.max_running_per_user]
        return min(eligible, key=self._turn_order, default=None)

    def _renumber(self) -> None:
        """Positions in round-robin order: every user's first ticket, then every user's second..."""
        queues = [self._waiting[user] for user in sorted(self._waiting, key=self._turn_order)]
        position = 0
        for depth in itertools.count():
            moved = False
            for tickets in queues:
                if depth < len(tickets):
                    position += 1
                    tickets[depth]._move_to(position)
                    moved = True
            if not moved:
                break
