"""Keyed, deterministic replacements: UIDs, patient pseudonyms and per-patient date offsets.

Everything is an HMAC-SHA256 of the original value under the user's key, so the same key maps the
same input the same way in every run and on every machine, while without the key the mapping
cannot be recomputed or inverted. A domain label keeps the three uses independent.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Optional

MAX_SHIFT_DAYS = 3650  # dates move back by 1 day to 10 years


class Keyring:
    def __init__(self, key: Optional[bytes] = None):
        # No key: a random one for this run only; it is kept nowhere but in this object.
        self._key = key if key else secrets.token_bytes(32)

    def _digest(self, domain: bytes, value: str) -> bytes:
        return hmac.new(self._key, domain + b"\0" + value.encode("utf-8", "surrogateescape"),
                        hashlib.sha256).digest()

    def uid(self, uid: str) -> str:
        """A UUID-derived UID (PS3.5 B.2, root 2.25) from the top 128 bits of the HMAC."""
        return "2.25." + str(int.from_bytes(self._digest(b"uid", uid)[:16], "big"))

    def pseudonym(self, patient: str) -> str:
        return "ANON" + self._digest(b"patient", patient).hex()[:12].upper()

    def day_offset(self, patient: str) -> int:
        """Days to add to every date of this patient: negative, the same for all of their studies."""
        return -(1 + int.from_bytes(self._digest(b"dates", patient)[:4], "big") % MAX_SHIFT_DAYS)
