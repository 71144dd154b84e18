"""Customers: who pays."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, StringConstraints

from contracts.common import Body, Metadata


class CustomerCreate(Body):
    email: Annotated[str, StringConstraints(max_length=320, pattern=r"^[^@\s]+@[^@\s]+$")] | None = None
    name: Annotated[str, StringConstraints(max_length=200)] | None = None
    country: Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")] | None = None
    metadata: Metadata = Field(default_factory=dict)
