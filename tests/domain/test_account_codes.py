"""The database accepts exactly the ledger account codes and types the domain knows: a code added on one side
only would fail at the first posting, in production."""

from __future__ import annotations

import re
from pathlib import Path

from domain.ledger import ACCOUNT_TYPES, PER_SUBJECT, AccountCode, AccountType

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"


def _last_check(column: str) -> set[str]:
    """The allowed values of the newest CHECK (<column> IN (...)) on the ledger accounts, up-migrations only."""
    found: list[str] = []
    for path in sorted(MIGRATIONS.glob("*.sql")):
        up = path.read_text().split("-- migrate:down")[0]
        for statement in up.split(";"):  # only what defines the ledger accounts' table
            if "ledger_accounts" in statement:
                found += re.findall(rf"CHECK \({column} IN \(([^)]*)\)\)", statement)
    return set(re.findall(r"'([a-z_]+)'", found[-1]))


def test_every_account_code_is_allowed_by_the_database_and_no_other() -> None:
    assert _last_check("code") == {code.value for code in AccountCode}


def test_every_account_type_is_allowed_by_the_database() -> None:
    assert {t.value for t in ACCOUNT_TYPES.values()} <= _last_check("type") == {t.value for t in AccountType}


def test_every_code_has_a_type_and_the_connect_accounts_are_per_account() -> None:
    assert set(ACCOUNT_TYPES) == set(AccountCode)
    assert {AccountCode.SELLER_PAYABLE, AccountCode.PAYOUTS_IN_TRANSIT} <= PER_SUBJECT
    assert not {AccountCode.PLATFORM_FEES, AccountCode.FX_CLEARING, AccountCode.FX_GAIN_LOSS} & PER_SUBJECT
