"""structlog configured for JSON lines, with a last line of defence that masks anything shaped like a PAN."""

from __future__ import annotations

import logging
import re
import sys
from typing import Any

import structlog

# 13 to 19 digits, optionally grouped by spaces or dashes: what a card number looks like in free text.
_PAN_SHAPE = re.compile(r"(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)")


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def contains_pan(text: str) -> bool:
    for match in _PAN_SHAPE.finditer(text):
        digits = re.sub(r"\D", "", match.group())
        if 13 <= len(digits) <= 19 and luhn_ok(digits):
            return True
    return False


def mask_pans(text: str) -> str:
    def _mask(match: re.Match[str]) -> str:
        digits = re.sub(r"\D", "", match.group())
        return "[REDACTED-PAN]" if 13 <= len(digits) <= 19 and luhn_ok(digits) else match.group()

    return _PAN_SHAPE.sub(_mask, text)


def _redact(_: Any, __: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    for key, value in event_dict.items():
        if isinstance(value, str):
            event_dict[key] = mask_pans(value)
        elif not isinstance(value, int | float | bool | type(None)):
            text = str(value)
            if contains_pan(text):
                event_dict[key] = mask_pans(text)
    return event_dict


def configure_logging(level: str = "INFO") -> None:
    logging.basicConfig(format="%(message)s", stream=sys.stdout, level=level)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per sandbox webhook is noise
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            _redact,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(),
        cache_logger_on_first_use=True,
    )
