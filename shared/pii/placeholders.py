"""Placeholders that stay the same for the same value throughout one conversation."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
from collections.abc import Mapping

PLACEHOLDER = re.compile(r"<(?P<kind>[A-Z][A-Z0-9_]*)_(?P<n>[1-9][0-9]*)>")
_DIGEST = re.compile(r"[0-9a-f]{64}")
_KIND = re.compile(r"[A-Z][A-Z0-9_]*")
_SEPARATORS = re.compile(r"[\s\-.()/]+")


def normalise_value(kind: str, value: str) -> str:
    """The form of ``value`` whose hash identifies it: spellings of one value agree.

    The anonymiser already hands phone numbers over as E.164 (``+8613812345678``) and IP
    addresses in their compressed form; this also covers callers that pass raw text.
    """
    value = value.strip()
    if kind == "EMAIL":
        return value.casefold()
    if kind == "IP":
        try:
            return str(ipaddress.ip_address(value))
        except ValueError:
            return value.casefold()
    if kind == "PHONE":
        return _SEPARATORS.sub("", value)
    if kind in ("CN_ID", "BANK_CARD", "IBAN"):
        return _SEPARATORS.sub("", value).upper()
    return value


class PlaceholderMap:
    """Keeps placeholders consistent within one conversation WITHOUT storing the original values.

    It maps a keyed hash (HMAC-SHA256 with ``secret``) of the normalised value to its
    placeholder, so the same phone number gets ``<PHONE_1>`` in every message of the session
    and a different one ``<PHONE_2>``. The hash is keyed because the space of phone numbers and
    card numbers is small enough to hash exhaustively: without the secret, a stored map would
    give the numbers back. Serialisable to JSON (``to_json``) for storage with the session.
    """

    def __init__(self, secret: bytes, entries: Mapping[str, str] | None = None) -> None:
        if not isinstance(secret, bytes | bytearray) or not secret:
            raise ValueError("PlaceholderMap needs a non-empty secret (bytes)")
        self._secret = bytes(secret)
        self._entries: dict[str, str] = {}
        self._last_number: dict[str, int] = {}
        for digest, placeholder in (entries or {}).items():
            self._add_entry(digest, placeholder)

    def _add_entry(self, digest: str, placeholder: str) -> None:
        if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
            raise ValueError(f"placeholder map entry {digest!r}: not a hex HMAC-SHA256 digest")
        match = PLACEHOLDER.fullmatch(placeholder) if isinstance(placeholder, str) else None
        if match is None:
            raise ValueError(
                f"placeholder map entry {digest[:12]}…: {placeholder!r} is not a placeholder "
                "like <PHONE_1>"
            )
        if placeholder in self._entries.values():
            raise ValueError(f"placeholder map: {placeholder} is given to two values")
        self._entries[digest] = placeholder
        kind, number = match["kind"], int(match["n"])
        self._last_number[kind] = max(number, self._last_number.get(kind, 0))

    def _digest(self, kind: str, value: str) -> str:
        # The kind is part of the message: one string found as two kinds gets two placeholders.
        message = f"{kind}\x00{normalise_value(kind, value)}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()

    def placeholder_for(self, kind: str, value: str) -> str:
        """``<KIND_n>`` for ``value``: the one it had before in this map, or the next number."""
        if not _KIND.fullmatch(kind):
            raise ValueError(f"placeholder kind {kind!r} must be upper-case letters, digits, _")
        digest = self._digest(kind, value)
        placeholder = self._entries.get(digest)
        if placeholder is None:
            number = self._last_number.get(kind, 0) + 1
            placeholder = f"<{kind}_{number}>"
            self._entries[digest] = placeholder
            self._last_number[kind] = number
        return placeholder

    def __len__(self) -> int:
        return len(self._entries)

    def to_json(self) -> dict[str, str]:
        """The entries, digest → placeholder; holds no original value."""
        return dict(self._entries)

    @classmethod
    def from_json(cls, secret: bytes, data: Mapping[str, str]) -> PlaceholderMap:
        """Rebuild a map stored with ``to_json``; malformed data raises ValueError."""
        if not isinstance(data, Mapping):
            raise ValueError("placeholder map JSON must be an object of digest → placeholder")
        return cls(secret, data)
