import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.money import Money
from domain.refund import RefundNotAllowed, RefundStatus, plan_refund, refundable, settle

USD = "USD"


def m(micros: int) -> Money:
    return Money(micros, USD)


def test_full_refund_by_default_and_partial_refunds() -> None:
    captured = m(10_000_000)
    assert plan_refund(captured, [], None) == captured
    prior = [(m(3_000_000), RefundStatus.SUCCEEDED), (m(2_000_000), RefundStatus.PENDING)]
    assert refundable(captured, prior) == m(5_000_000)
    assert plan_refund(captured, prior, None) == m(5_000_000)
    assert plan_refund(captured, prior, m(1_000_000)) == m(1_000_000)


def test_failed_and_canceled_refunds_give_their_share_back() -> None:
    prior = [(m(10_000_000), RefundStatus.FAILED), (m(10_000_000), RefundStatus.CANCELED)]
    assert plan_refund(m(10_000_000), prior, None) == m(10_000_000)


@pytest.mark.parametrize(("prior", "requested", "code"), [
    ([(10_000_000, RefundStatus.SUCCEEDED)], None, "fully_refunded"),
    ([(9_000_000, RefundStatus.PENDING)], 2_000_000, "exceeds_refundable"),
    ([], 0, "invalid_amount"),
    ([], -1, "invalid_amount"),
])
def test_refusals(prior: list[tuple[int, RefundStatus]], requested: int | None, code: str) -> None:
    with pytest.raises(RefundNotAllowed) as exc:
        plan_refund(m(10_000_000), [(m(a), s) for a, s in prior], None if requested is None else m(requested))
    assert exc.value.code == code


def test_currency_mismatch() -> None:
    with pytest.raises(RefundNotAllowed) as exc:
        plan_refund(m(10_000_000), [], Money(1_000_000, "EUR"))
    assert exc.value.code == "currency_mismatch"


@given(st.integers(1, 10**12), st.lists(st.integers(1, 10**12), max_size=20))
def test_never_more_than_captured(captured_micros: int, requests: list[int]) -> None:
    captured, taken = m(captured_micros), []
    for r in requests:
        try:
            taken.append((plan_refund(captured, taken, m(r)), RefundStatus.SUCCEEDED))
        except RefundNotAllowed:
            pass
    assert sum(a.micros for a, _ in taken) <= captured_micros


def test_settle_moves_pending_only() -> None:
    assert settle(RefundStatus.PENDING, RefundStatus.SUCCEEDED) is RefundStatus.SUCCEEDED
    with pytest.raises(ValueError):
        settle(RefundStatus.SUCCEEDED, RefundStatus.FAILED)
    with pytest.raises(ValueError):
        settle(RefundStatus.PENDING, RefundStatus.PENDING)
