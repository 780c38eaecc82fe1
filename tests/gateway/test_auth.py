"""Client tokens, credential sources, Origin and subprotocol rules (pure)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from realtalk.errors import ConfigError
from realtalk.gateway.auth import (
    COOKIE_NAME,
    REFUSAL,
    SUBPROTOCOL_PREFIX,
    Authenticator,
    AuthFailure,
    Principal,
    origin_allowed,
    pick_subprotocol,
)
from realtalk.gateway.config import GatewayConfig

from .conftest import gateway_settings

STATIC = "static-token-0123456789"
NOW = 1_800_000_000.0


def _auth(**kwargs: object) -> Authenticator:
    options: dict[str, object] = {"static_tokens": (STATIC,), "secret": b"k" * 32, "token_ttl_s": 600}
    options.update(kwargs)
    return Authenticator(**options)  # type: ignore[arg-type]


def _who(auth: Authenticator, **request: object) -> Principal | AuthFailure:
    values: dict[str, object] = {
        "headers": {},
        "cookies": {},
        "subprotocols": (),
        "client_host": "10.0.0.9",
        "now_s": NOW,
    }
    values.update(request)
    return auth.authenticate(**values)  # type: ignore[arg-type]


def test_a_signed_token_is_valid_until_it_expires_and_cannot_be_forged() -> None:
    auth = _auth()
    token, expires_at = auth.mint("alice", NOW, ttl_s=60)
    assert expires_at == NOW + 60
    assert auth.verify(token, NOW + 59) == Principal("alice", "signed", expires_at)
    assert isinstance(auth.verify(token, NOW + 60), AuthFailure)
    assert "expired" in auth.verify(token, NOW + 61).reason  # type: ignore[union-attr]
    assert isinstance(_auth(secret=b"x" * 32).verify(token, NOW), AuthFailure)
    head, payload, signature = token.split(".")
    assert isinstance(auth.verify(f"{head}.{payload}x.{signature}", NOW), AuthFailure)
    assert isinstance(auth.verify("rt1.a.b.c", NOW), AuthFailure)


def test_after_a_secret_rotation_tokens_of_the_previous_secret_stay_valid_and_new_ones_use_the_new() -> None:
    old_secret, new_secret = b"o" * 32, b"n" * 32
    before = Authenticator(secret=old_secret, signed_tokens_configured=True)
    issued_before, expires_at = before.mint("alice", NOW, ttl_s=600)
    rotated = Authenticator(secret=new_secret, signed_tokens_configured=True, previous_secrets=[old_secret])
    after_rotation = Authenticator(secret=new_secret, signed_tokens_configured=True)

    assert rotated.verify(issued_before, NOW + 1) == Principal("alice", "signed", expires_at)
    issued_after, bob_expires_at = rotated.mint("bob", NOW)
    assert isinstance(before.verify(issued_after, NOW), AuthFailure)  # signed with the new secret only
    assert after_rotation.verify(issued_after, NOW) == Principal("bob", "signed", bob_expires_at)
    # Once the previous secret is dropped, its tokens are refused.
    assert isinstance(after_rotation.verify(issued_before, NOW + 1), AuthFailure)


def test_a_previous_secret_without_a_current_one_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="REALTALK_GATEWAY_PREVIOUS_SECRET is only read beside"):
        GatewayConfig.from_settings(gateway_settings(None, gateway_previous_secret="p" * 40))
    config = GatewayConfig.from_settings(
        gateway_settings(None, gateway_secret="n" * 40, gateway_previous_secret="p" * 40)
    )
    assert config.previous_secret == b"p" * 40 and "p" * 40 not in repr(config)


def test_minted_tokens_never_outlive_the_configured_ttl() -> None:
    _, expires_at = _auth().mint("bob", NOW, ttl_s=10_000)
    assert expires_at == NOW + 600


def test_a_static_token_names_its_user_by_a_hash_never_the_token() -> None:
    principal = _auth().verify(STATIC, NOW)
    assert isinstance(principal, Principal) and principal.method == "static"
    assert principal.subject.startswith("token:") and STATIC not in principal.subject
    assert isinstance(_auth().verify("static-token-012345678X", NOW), AuthFailure)


def test_credentials_are_read_from_the_header_the_subprotocol_or_the_cookie() -> None:
    auth = _auth()
    signed, _ = auth.mint("carol", NOW)
    assert _who(auth, headers={"authorization": f"Bearer {STATIC}"}).method == "static"  # type: ignore[union-attr]
    assert _who(auth, subprotocols=["realtime", SUBPROTOCOL_PREFIX + signed]).subject == "carol"  # type: ignore[union-attr]
    assert _who(auth, cookies={COOKIE_NAME: signed}).subject == "carol"  # type: ignore[union-attr]
    assert "no credential" in _who(auth).reason  # type: ignore[union-attr]
    # A bad bearer is not rescued by a good cookie: the first credential decides.
    assert isinstance(
        _who(auth, headers={"authorization": "Bearer nope"}, cookies={COOKIE_NAME: signed}), AuthFailure
    )


def test_principal_headers_count_only_when_trusted() -> None:
    headers = {"x-ms-client-principal-name": "dana@contoso.com"}
    assert isinstance(_who(_auth(), headers=headers), AuthFailure)
    assert _who(_auth(trust_principal_header=True), headers=headers) == Principal(
        "dana@contoso.com", "principal"
    )


def test_without_configuration_the_gateway_is_open_and_users_are_their_address() -> None:
    open_auth = Authenticator(secret=b"k" * 32)
    assert not open_auth.configured
    assert _who(open_auth) == Principal("open:10.0.0.9", "open")


def test_origins_must_be_the_gateways_own_or_allowed() -> None:
    assert origin_allowed(None, "gw:8000", ())
    assert origin_allowed("http://gw:8000", "gw:8000", ())
    assert origin_allowed("https://app.example.com/", "gw:8000", ("https://app.example.com",))
    assert not origin_allowed("https://evil.example", "gw:8000", ("https://app.example.com",))
    assert not origin_allowed("http://gw:8001", "gw:8000", ())
    assert not origin_allowed("null", "gw:8000", ())


def test_the_answered_subprotocol_never_carries_the_token() -> None:
    assert pick_subprotocol(["openai-insecure-api-key.t", "realtime"]) == "realtime"
    assert pick_subprotocol(["openai-insecure-api-key.t", "x"]) == "x"
    assert pick_subprotocol([]) is None


# -- any bytes in any credential position: a refusal, never an exception ---------------------------

_ANY_TEXT = st.text(alphabet=st.characters(codec=None), max_size=200)  # surrogates included


@settings(max_examples=300, deadline=None)
@given(tail=_ANY_TEXT)
def test_a_signed_token_with_any_signature_is_refused_not_raised(tail: str) -> None:
    auth = _auth()
    token, _ = auth.mint("alice", NOW)
    forged = token.rsplit(".", 1)[0] + "." + tail
    result = auth.verify(forged, NOW)
    assert isinstance(result, AuthFailure) or forged == token


@settings(max_examples=300, deadline=None)
@given(raw=st.binary(max_size=200), position=st.sampled_from(["bearer", "api-key", "subprotocol", "cookie"]))
def test_any_bytes_in_any_credential_position_are_refused_not_raised(raw: bytes, position: str) -> None:
    # Servers decode header bytes as Latin-1 (ASGI); cookies may carry anything.
    text = raw.decode("latin-1")
    for candidate in (text, "rt1." + text, "rt1.e30." + text, raw.decode("utf-8", "surrogateescape")):
        request: dict[str, object] = {
            "bearer": {"headers": {"authorization": f"Bearer {candidate}"}},
            "api-key": {"headers": {"api-key": candidate}},
            "subprotocol": {"subprotocols": (SUBPROTOCOL_PREFIX + candidate,)},
            "cookie": {"cookies": {COOKIE_NAME: candidate}},
        }[position]
        result = _who(_auth(), **request)
        assert isinstance(result, AuthFailure) or candidate.strip() == STATIC


def test_the_api_key_header_carries_a_token_as_azure_clients_send_it() -> None:
    assert isinstance(_who(_auth(), headers={"api-key": STATIC}), Principal)
    assert isinstance(_who(_auth(), headers={"api-key": "wrong-0123456789"}), AuthFailure)


def test_a_refusal_tells_the_client_nothing_about_which_check_failed() -> None:
    auth = _auth()
    token, _ = auth.mint("alice", NOW, ttl_s=60)
    reasons = {
        _who(auth).reason,  # type: ignore[union-attr]
        auth.verify(token, NOW + 61).reason,  # type: ignore[union-attr]
        auth.verify(token[:-2] + "xx", NOW).reason,  # type: ignore[union-attr]
    }
    assert len(reasons) == 3  # the log can tell them apart
    assert all(reason not in REFUSAL for reason in reasons)  # the client cannot
    assert "token" in REFUSAL and "api-key" in REFUSAL


def _signed_by_a_backend(claims: object, secret: bytes = b"k" * 32) -> str:
    """A token as a backend holding the secret signs it itself (any claims it chose)."""

    def b64url(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")

    signed = "rt1." + b64url(json.dumps(claims).encode())
    return f"{signed}.{b64url(hmac.new(secret, signed.encode(), hashlib.sha256).digest())}"


_CLAIMS = st.fixed_dictionaries(
    {
        "sub": st.one_of(st.text(alphabet=st.characters(codec=None), max_size=300), st.integers(), st.none()),
        "exp": st.one_of(
            st.integers(min_value=int(NOW) - 5, max_value=int(NOW) + 10**6),
            st.integers(),
            st.floats(allow_nan=False),
            st.booleans(),
            st.none(),
        ),
    }
) | st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(), lambda kids: st.lists(kids), max_leaves=5
)


@settings(max_examples=300, deadline=None)
@given(claims=_CLAIMS)
def test_any_claims_a_backend_signs_are_refused_or_name_a_subject_the_gateway_can_sign_again(
    claims: object,
) -> None:
    # POST /api/session turns an accepted token into a cookie minted for the same subject.
    auth = _auth()
    result = auth.verify(_signed_by_a_backend(claims), NOW)
    if isinstance(result, Principal):
        token, _ = auth.mint(result.subject, NOW)
        assert auth.verify(token, NOW) == Principal(result.subject, "signed", int(NOW) + 600)


def test_a_backend_signed_token_with_an_unprintable_subject_is_refused() -> None:
    for subject in ("", "\x00", "a\nb", "\ud800", "x" * 257):
        token = _signed_by_a_backend({"sub": subject, "exp": int(NOW) + 60})
        assert isinstance(_auth().verify(token, NOW), AuthFailure), repr(subject)


def test_a_subject_with_a_lone_surrogate_cannot_be_minted() -> None:
    # JSON may carry "\ud800"; a token for it would fail as soon as it is written out as UTF-8.
    with pytest.raises(ValueError, match="printable"):
        _auth().mint("al\ud800ice", NOW)


def test_a_configured_token_with_bytes_that_are_not_utf8_still_authenticates() -> None:
    # The environment hands such bytes over as surrogate escapes (os.environ's decoding).
    token = "static-\udcff-token-0123456789"
    principal = _auth(static_tokens=(token,)).verify(token, NOW)
    assert isinstance(principal, Principal) and principal.method == "static"


def test_the_logged_reason_names_where_the_refused_credential_was_sent() -> None:
    auth = _auth()
    where = {
        "Authorization": _who(auth, headers={"authorization": "Bearer nope-0123456789"}),
        "api-key": _who(auth, headers={"api-key": "nope-0123456789"}),
        "subprotocol": _who(auth, subprotocols=[SUBPROTOCOL_PREFIX + "nope-0123456789"]),
        "cookie": _who(auth, cookies={COOKIE_NAME: "nope-0123456789"}),
    }
    for name, result in where.items():
        assert isinstance(result, AuthFailure) and name in result.reason, (name, result)
        assert "nope-0123456789" not in result.reason


def test_a_trusted_principal_header_is_read_as_utf8_and_must_be_printable() -> None:
    # ASGI servers hand header bytes over decoded as Latin-1; the front end writes names in UTF-8.
    trusted = _auth(trust_principal_header=True)
    name = "José Müller".encode().decode("latin-1")
    assert _who(trusted, headers={"x-ms-client-principal-name": name}) == Principal(
        "José Müller", "principal"
    )
    for garbage in ("tok\x80\x9fen", "\xff\xfe", "a\x01b", ""):
        assert isinstance(_who(trusted, headers={"x-ms-client-principal-name": garbage}), AuthFailure)
