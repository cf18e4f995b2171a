"""Table E.1-1 compiled, once, for a set of options into one action per tag.

Compound actions of the table are resolved to the most removing choice that keeps the output
usable: "X unless Z or D is required for IOD conformance" becomes X, "Z unless D" becomes Z, and
"X unless replacement of contained UIDs is required" (reference sequences) becomes U, so that the
references survive with their UIDs remapped like everywhere else. Patient name and ID get the
keyed pseudonym (P) that the product promises instead of an empty value.

An option's C (clean, or for dates: modify) is honoured only where a value can really be rewritten;
everywhere else the attribute gets its Basic Profile action (`basic_action`): clean never means keep.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Tuple

from . import table_e1_1 as table
from .options import AnonymizeOptions

# Actions after compilation: X remove, Z empty, D dummy, K keep, C clean, U remap UIDs, P pseudonym.
RESOLVE = {"X": "X", "Z": "Z", "D": "D", "K": "K", "C": "C", "U": "U",
           "Z/D": "Z", "X/Z": "X", "X/D": "X", "X/Z/D": "X", "X/Z/U*": "U"}
PSEUDONYM_TAGS = (0x00100010, 0x00100020)  # PatientName, PatientID
_BASIC = {tag: RESOLVE[a] for tag, a in table.BASIC.items()}
_BASIC_MASKED = [(v, m, RESOLVE[a]) for v, m, a in table.BASIC_MASKED]


def _lookup(actions: Dict[int, str], masked: List[Tuple[int, int, str]], tag: int) -> str:
    found = actions.get(tag)
    if found is not None:
        return found
    for value, mask, action in masked:
        if tag & mask == value:
            return action
    return ""


@dataclass
class Profile:
    actions: Dict[int, str]
    masked: List[Tuple[int, int, str]]
    private: str  # X (remove all) or C (keep the safe-private list)

    def action(self, tag: int) -> str:
        """The action for a tag, or "" when the table does not list it."""
        return _lookup(self.actions, self.masked, tag)

    @staticmethod
    def basic_action(tag: int) -> str:
        """The Basic Profile action: what a C that cannot be carried out falls back to (X if unlisted)."""
        return _lookup(_BASIC, _BASIC_MASKED, tag) or "X"


def _combine(current: str, option: str) -> str:
    # An option can only retain more: K (keep) beats C (clean), which beats any basic action.
    if current == "K" or option == "K":
        return "K"
    return "C"


def compile_profile(options: AnonymizeOptions) -> Profile:
    actions = dict(_BASIC)
    masked = list(_BASIC_MASKED)
    private = table.BASIC_PRIVATE
    retained = set()
    for column in options.columns():
        for tag, action in table.OPTIONS[column].items():
            actions[tag] = _combine(actions[tag] if tag in retained else "", action)
            retained.add(tag)
        # Option rows go first so that they win over the basic rows for the same tags.
        masked = [(v, m, RESOLVE[a]) for v, m, a in table.OPTIONS_MASKED.get(column, [])] + masked
        private = table.OPTIONS_PRIVATE.get(column, private)
    for tag in PSEUDONYM_TAGS:
        actions[tag] = "P"
    return Profile(actions=actions, masked=masked, private=private)
