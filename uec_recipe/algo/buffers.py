"""Stage 6, the batch buffer and its update trigger, and stages 7b-7c, the replay buffer and the rows of a replay
update (docs/algorithm.md, "The step").

Both are FIFOs of small records (a TransferQueue key plus what the driver needs to know about the row); the
rows themselves stay in verl's TransferQueue until a buffer lets go of them. Nothing here knows about Ray.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass
from typing import Iterable


@dataclass(frozen=True)
class BufferedRow:
    key: str  # TransferQueue key of the trajectory
    tag: dict  # its TransferQueue tag (sequence lengths, weight versions)
    advantage: float  # frozen sequence advantage, computed within its group at generation time
    exploration: bool  # sampled at the exploration temperature T'
    step: int  # training step that generated it


class FifoBuffer:
    """A first-in-first-out buffer with a capacity; appending past capacity evicts the oldest rows."""

    def __init__(self, capacity: int):
        if capacity < 1:
            raise ValueError(f"buffer capacity must be >= 1, got {capacity}")
        self.capacity = int(capacity)
        self._rows: deque[BufferedRow] = deque()

    def __len__(self) -> int:
        return len(self._rows)

    def rows(self) -> list[BufferedRow]:
        return list(self._rows)

    def extend(self, rows: Iterable[BufferedRow]) -> list[BufferedRow]:
        """Append rows; return the rows evicted (oldest first) to stay within capacity."""
        self._rows.extend(rows)
        evicted = []
        while len(self._rows) > self.capacity:
            evicted.append(self._rows.popleft())
        return evicted

    def pop_oldest(self, count: int) -> list[BufferedRow]:
        if count < 0 or count > len(self._rows):
            raise ValueError(f"cannot pop {count} rows from a buffer holding {len(self._rows)}")
        return [self._rows.popleft() for _ in range(count)]

    def replace(self, rows: Iterable[BufferedRow]) -> None:
        """Restore contents (checkpoint resume)."""
        self._rows = deque(rows)


def whole_blocks(size: int, n0: int) -> int:
    """floor(size / N0) · N0: the most rows that form whole update batches (0 below N0)."""
    return (size // n0) * n0


def update_pop_size(buffer_size: int, n0: int) -> int:
    """Rows the batch buffer hands to one policy update (stage 6b).

    The released code pops the oldest ⌊size/N0⌋·N0 rows once the buffer holds N0 or more
    (597358816/EFRame, verl/trainer/ray_trainer.py, ``batch_buffer.pop((size // N0) * N0)``): a buffer holding
    2·N0 rows trains on all of them in one update, so no buffered row waits to be evicted untrained.
    """
    return whole_blocks(buffer_size, n0)


def select_replay_rows(rows: list[BufferedRow], n0: int, capacity: int, rng: random.Random) -> list[BufferedRow]:
    """The rows of one replay update (stage 7c), as the released code picks them.

    A full buffer replays whole, oldest first; otherwise a uniform random sample of ⌊size/N0⌋·N0 rows, in the
    sampled order (597358816/EFRame, verl/trainer/ray_trainer.py: ``replay_buffer.buffer`` when
    ``size == capacity``, else ``replay_buffer.sample(...)``, which is ``random.sample``). Below N0 rows: none.
    """
    size = whole_blocks(len(rows), n0)
    if size == 0:
        return []
    if len(rows) == capacity:
        return list(rows)
    return rng.sample(rows, size)


def fifo_capacity(multiple: float, n0: int) -> int:
    """Capacity in rows for a capacity given in units of N0 (never below one update batch).

    The released code sizes both buffers as ``int(multiple * N0)`` rows (verl/trainer/ray_trainer.py).
    """
    return max(n0, int(multiple * n0))
