"""A rule refused a request: the common shape of refusals in the domain (invoices, subscriptions, …).

Every refusal carries a stable, kebab-case ``code`` (part of the API contract: clients branch on it, so it never
changes once published) and a human ``message`` (free to improve). The API maps any ``Refused`` to a
problem+json answer with the code, whatever module raised it.
"""

from __future__ import annotations


class Refused(Exception):
    """A rule refused the request; ``code`` says which (stable, e.g. ``price-inactive``)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code!r}, {self.message!r})"
