"""PII anonymisation: typed placeholders (``<PHONE_1>``) that stay consistent in a conversation.

``Anonymizer`` finds e-mail addresses, phone numbers, Chinese resident IDs, bank cards, IBANs,
IP addresses and tenant patterns; ``PlaceholderMap`` numbers them per conversation without
keeping the values; ``redact_pii`` and ``pii_log_processor`` keep them out of logs.
"""

from shared.pii.anonymizer import Anonymizer
from shared.pii.log_redaction import pii_log_processor, redact_pii
from shared.pii.patterns import PiiKind, PiiPattern, PiiSpan
from shared.pii.placeholders import PlaceholderMap

__all__ = [
    "Anonymizer",
    "PiiKind",
    "PiiPattern",
    "PiiSpan",
    "PlaceholderMap",
    "pii_log_processor",
    "redact_pii",
]
