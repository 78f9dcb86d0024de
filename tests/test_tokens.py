import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drip.core.tokens import TOKEN_LENGTH, Action, TokenError, TokenExpired, make_token, read_token

OLD, NEW = "o" * 32, "n" * 32
DAY = dt.date(2027, 3, 1)


@given(object_id=st.integers(0, 2**63 - 1), action=st.sampled_from(list(Action)), days=st.integers(1, 3000))
def test_round_trip(object_id: int, action: Action, days: int) -> None:
    expires = dt.date(2020, 1, 1) + dt.timedelta(days=days)
    token = make_token([NEW], action, object_id, expires)
    assert len(token) == TOKEN_LENGTH and token == token.lower() and token.isalnum()
    claim = read_token([NEW], token, action, min(expires, DAY))
    assert (claim.action, claim.object_id, claim.expires) == (action, object_id, expires)


def test_case_and_spaces_do_not_matter() -> None:
    token = make_token([NEW], Action.DONE, 42, None)
    assert read_token([NEW], f"  {token.upper()} ", Action.DONE, DAY).object_id == 42


@given(position=st.integers(0, TOKEN_LENGTH - 1), char=st.sampled_from("abcdefghijklmnopqrstuvwxyz234567"))
def test_any_change_is_refused(position: int, char: str) -> None:
    token = make_token([NEW], Action.DONE, 42, None)
    changed = token[:position] + char + token[position + 1 :]
    if changed != token:
        with pytest.raises(TokenError):
            read_token([NEW], changed, Action.DONE, DAY)


def test_rotation_old_keys_verify_new_key_signs() -> None:
    old_token = make_token([OLD], Action.UNSUBSCRIBE, 7, None)
    assert read_token([NEW, OLD], old_token, Action.UNSUBSCRIBE, DAY).object_id == 7
    new_token = make_token([NEW, OLD], Action.UNSUBSCRIBE, 7, None)
    with pytest.raises(TokenError, match="not one drip sent"):
        read_token([OLD], new_token, Action.UNSUBSCRIBE, DAY)


def test_wrong_action_expired_and_truncated() -> None:
    token = make_token([NEW], Action.DONE, 42, dt.date(2027, 2, 1))
    with pytest.raises(TokenError, match="something else"):
        read_token([NEW], token, Action.UNSUBSCRIBE, dt.date(2027, 1, 1))
    with pytest.raises(TokenExpired, match="expired on 01 February 2027"):
        read_token([NEW], token, Action.DONE, dt.date(2027, 2, 2))
    with pytest.raises(TokenError, match="incomplete"):
        read_token([NEW], token[:-3], Action.DONE, dt.date(2027, 1, 1))


def test_tokens_fit_in_an_address_local_part() -> None:
    assert len("comms+" + make_token([NEW], Action.DONE, 2**63 - 1, DAY)) <= 64
