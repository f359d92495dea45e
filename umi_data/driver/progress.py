"""Progress counters a step bumps from whichever process runs it: [input bytes read, records
read]. The executor decides what they are (a list in process, shared memory for a process pool,
nothing on Ray, whose results are counted as they come back)."""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

_COUNTER: Any = None


def use(counter: Any) -> None:
    """Set this process's counters (``None``: steps count nothing)."""
    global _COUNTER
    _COUNTER = counter


def note(nbytes: int, records: int) -> None:
    """Add one unit's bytes and records to the counters, if any."""
    c = _COUNTER
    if c is None:
        return
    with c.get_lock() if hasattr(c, "get_lock") else nullcontext():
        c[0] += nbytes
        c[1] += records
