"""An SMS text's length, encoding and segments: what the closer sees beside an SMS or WhatsApp draft."""

from __future__ import annotations

from dataclasses import dataclass

# GSM 03.38 basic character set (and its extension table, which costs two septets): a text of only these is
# sent as GSM-7 (160 characters in one segment, 153 per segment when split); anything else makes it UCS-2 (70/67).
GSM7 = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿"
    "abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENDED = set("^{}\\[~]|€\f")


@dataclass(frozen=True)
class TextStats:
    characters: int
    encoding: str  # GSM-7 | UCS-2
    segments: int


def text_stats(text: str) -> TextStats:
    """Length and SMS segments of a text (what the closer sees beside an SMS draft; WhatsApp has no segments)."""
    if all(c in GSM7 or c in GSM7_EXTENDED for c in text):
        units = sum(2 if c in GSM7_EXTENDED else 1 for c in text)
        single, multi, encoding = 160, 153, "GSM-7"
    else:
        units = sum(2 if ord(c) > 0xFFFF else 1 for c in text)  # UTF-16 code units
        single, multi, encoding = 70, 67, "UCS-2"
    segments = 1 if units <= single else -(-units // multi)
    return TextStats(characters=len(text), encoding=encoding, segments=segments)
