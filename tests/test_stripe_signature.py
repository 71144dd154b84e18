from __future__ import annotations

import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from activities.providers.webhooks.stripe_signature import SignatureError, sign_stripe_payload, verify_stripe_signature

SECRET = "whsec_current"
OLD_SECRET = "whsec_previous"
NOW = 1_700_000_000
TOL = 300
PAYLOAD = b'{"id":"evt_1","type":"payment_intent.succeeded"}'


def _v1(payload: bytes, secret: str, t: int) -> str:
    return hmac.new(secret.encode(), f"{t}.".encode() + payload, hashlib.sha256).hexdigest()


def _reason(payload: bytes, header: str | None, secrets: list[str] | None = None, now: int = NOW) -> str:
    with pytest.raises(SignatureError) as exc:
        verify_stripe_signature(payload, header, secrets or [SECRET], TOL, now)
    return exc.value.reason


def test_sign_matches_stripe_scheme() -> None:
    assert sign_stripe_payload(PAYLOAD, SECRET, NOW) == f"t={NOW},v1={_v1(PAYLOAD, SECRET, NOW)}"


def test_valid_signature() -> None:
    verify_stripe_signature(PAYLOAD, sign_stripe_payload(PAYLOAD, SECRET, NOW), [SECRET], TOL, NOW)


def test_signature_error_is_a_value_error() -> None:
    assert issubclass(SignatureError, ValueError)


def test_wrong_secret() -> None:
    assert _reason(PAYLOAD, sign_stripe_payload(PAYLOAD, "whsec_attacker", NOW)) == "signature_mismatch"


def test_tampered_payload() -> None:
    header = sign_stripe_payload(PAYLOAD, SECRET, NOW)
    assert _reason(PAYLOAD + b" ", header) == "signature_mismatch"


def test_two_configured_secrets_rotation() -> None:
    # We roll our secret: requests signed with either the old or the new one verify.
    for signer in (SECRET, OLD_SECRET):
        header = sign_stripe_payload(PAYLOAD, signer, NOW)
        verify_stripe_signature(PAYLOAD, header, [OLD_SECRET, SECRET], TOL, NOW)
    assert _reason(PAYLOAD, sign_stripe_payload(PAYLOAD, "whsec_other", NOW), [OLD_SECRET, SECRET]) == (
        "signature_mismatch"
    )


def test_multiple_v1_values_any_matches() -> None:
    # Stripe rolls the endpoint secret: one v1 per active secret, plus a legacy v0.
    bogus = "0" * 64
    header = f"t={NOW},v1={bogus},v1={_v1(PAYLOAD, SECRET, NOW)},v0={bogus}"
    verify_stripe_signature(PAYLOAD, header, [SECRET], TOL, NOW)
    header_reversed = f"t={NOW},v1={_v1(PAYLOAD, SECRET, NOW)},v1={bogus}"
    verify_stripe_signature(PAYLOAD, header_reversed, [SECRET], TOL, NOW)


def test_whitespace_and_uppercase_hex_tolerated() -> None:
    header = f" t={NOW} , v1={_v1(PAYLOAD, SECRET, NOW).upper()} "
    verify_stripe_signature(PAYLOAD, header, [SECRET], TOL, NOW)


@pytest.mark.parametrize("skew", [TOL + 1, -(TOL + 1), 86_400, -86_400])
def test_timestamp_outside_tolerance(skew: int) -> None:
    # Positive skew: signed in the future; negative: stale (a replay).
    header = sign_stripe_payload(PAYLOAD, SECRET, NOW + skew)
    assert _reason(PAYLOAD, header) == "timestamp_outside_tolerance"


@pytest.mark.parametrize("skew", [0, TOL, -TOL])
def test_timestamp_at_tolerance_edge_accepted(skew: int) -> None:
    header = sign_stripe_payload(PAYLOAD, SECRET, NOW + skew)
    verify_stripe_signature(PAYLOAD, header, [SECRET], TOL, NOW)


def test_forged_stale_reports_mismatch_not_staleness() -> None:
    # The signature is checked first: staleness is only reported for authentic messages (replays).
    header = sign_stripe_payload(PAYLOAD, "whsec_attacker", NOW - 10_000)
    assert _reason(PAYLOAD, header) == "signature_mismatch"


@pytest.mark.parametrize("header", [None, "", "   "])
def test_missing_header(header: str | None) -> None:
    assert _reason(PAYLOAD, header) == "missing_header"


@pytest.mark.parametrize(
    "header",
    [
        "garbage",
        "v1=abc",  # no t
        f"t={NOW},garbage",
        "t=abc,v1=" + "0" * 64,
        "t=-5,v1=" + "0" * 64,
        "t=+5,v1=" + "0" * 64,
        "t=1_000,v1=" + "0" * 64,
        "t=" + "9" * 5000 + ",v1=" + "0" * 64,  # int() would raise on > 4300 digits
        "t=\u0663\u0663,v1=" + "0" * 64,  # Arabic-Indic digits: str.isdigit() says yes
        f"t={NOW},t={NOW},v1=" + "0" * 64,
    ],
)
def test_malformed_header(header: str) -> None:
    assert _reason(PAYLOAD, header) == "malformed_header"


@pytest.mark.parametrize("header", [f"t={NOW}", f"t={NOW},v0={'0' * 64}", f"t={NOW},v2=abc"])
def test_no_v1(header: str) -> None:
    assert _reason(PAYLOAD, header) == "no_v1_signature"


@pytest.mark.parametrize("v1", ["", "zz", "é" * 64, "0" * 63, "0" * 65])
def test_garbage_v1_is_a_mismatch(v1: str) -> None:
    assert _reason(PAYLOAD, f"t={NOW},v1={v1}") == "signature_mismatch"


def test_empty_secret_never_verifies() -> None:
    header = sign_stripe_payload(PAYLOAD, "", NOW)
    assert _reason(PAYLOAD, header, [""]) == "signature_mismatch"


def test_non_utf8_payload_signed_correctly_verifies() -> None:
    payload = b"\xff\xfe\x00\x80 not utf-8 \xc3\x28"
    with pytest.raises(UnicodeDecodeError):
        payload.decode("utf-8")
    verify_stripe_signature(payload, sign_stripe_payload(payload, SECRET, NOW), [SECRET], TOL, NOW)


@given(payload=st.binary(max_size=512), header=st.one_of(st.none(), st.text(max_size=300)))
def test_arbitrary_input_only_raises_signature_error(payload: bytes, header: str | None) -> None:
    try:
        verify_stripe_signature(payload, header, [SECRET, OLD_SECRET], TOL, NOW)
    except SignatureError:
        pass


_items = st.one_of(
    st.builds(lambda t: f"t={t}", st.one_of(st.integers(), st.text(max_size=20))),
    st.builds(
        lambda v: f"v1={v}", st.one_of(st.text(max_size=70), st.from_regex(r"[0-9a-f]{64}", fullmatch=True))
    ),
    st.builds(lambda v: f"v0={v}", st.text(max_size=10)),
    st.text(max_size=20),
)


@given(payload=st.binary(max_size=256), items=st.lists(_items, max_size=6))
def test_header_shaped_input_only_raises_signature_error(payload: bytes, items: list[str]) -> None:
    # Plausible-looking headers reach deeper than random text: still only SignatureError.
    try:
        verify_stripe_signature(payload, ",".join(items), [SECRET], TOL, NOW)
    except SignatureError:
        pass


@given(payload=st.binary(max_size=512), t=st.integers(min_value=0, max_value=2**40))
def test_roundtrip_any_bytes(payload: bytes, t: int) -> None:
    verify_stripe_signature(payload, sign_stripe_payload(payload, SECRET, t), [SECRET], TOL, t)
