"""The processes a command started, read from /proc (Linux): for the tests that check that workers die
with their driver and for the benchmark that sums the memory of a whole run.

Fork-server workers are grandchildren of the driver, so the walk follows parent links all the way down.
"""
from __future__ import annotations

import os


def descendants(pid: int) -> list:
    """Every process below `pid` (children, their children, ...), not `pid` itself."""
    children: dict = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                # the command name (field 2) may hold spaces and parentheses: the fields after its last ")"
                parent = int(fh.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue  # gone since the listing
        children.setdefault(parent, []).append(int(entry))
    found, stack = [], [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found
