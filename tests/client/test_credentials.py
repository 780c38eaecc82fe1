"""API keys and Entra ID tokens: headers, caching, refresh, concurrency, no secrets in text."""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Any

import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import ClientAuthenticationError

from realtalk.client.credentials import (
    DEFAULT_ENTRA_SCOPE,
    ApiKeyCredential,
    EntraCredential,
    default_credential,
)
from realtalk.errors import ConfigError

KEY = "0123456789abcdef0123456789abcdef"
START_S = 1_800_000_000.0


class FakeClock:
    """Unix time that only moves when the test says so."""

    def __init__(self, now_s: float = START_S) -> None:
        self.now_s = now_s

    def __call__(self) -> float:
        return self.now_s


class FakeTokenCredential:
    """An async token credential: counts fetches, tokens expire ``lifetime_s`` after issue."""

    def __init__(
        self,
        clock: FakeClock,
        *,
        lifetime_s: float = 3600,
        delay_s: float = 0.0,
        error: Exception | None = None,
    ) -> None:
        self.clock = clock
        self.lifetime_s = lifetime_s
        self.delay_s = delay_s
        self.error = error
        self.calls = 0
        self.scopes: list[tuple[str, ...]] = []
        self.closed = False

    async def get_token(
        self,
        *scopes: str,
        claims: str | None = None,
        tenant_id: str | None = None,
        enable_cae: bool = False,
        **kwargs: Any,
    ) -> AccessToken:
        self.calls += 1
        self.scopes.append(scopes)
        number = self.calls
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.error is not None:
            raise self.error
        return AccessToken(f"token-{number}", int(self.clock() + self.lifetime_s))

    async def close(self) -> None:
        self.closed = True

    async def __aenter__(self) -> FakeTokenCredential:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        await self.close()


# --- API key -------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_an_azure_api_key_goes_in_the_api_key_header() -> None:
    assert await ApiKeyCredential(KEY).headers() == {"api-key": KEY}


@pytest.mark.asyncio
async def test_a_bearer_style_key_goes_in_the_authorization_header() -> None:
    credential = ApiKeyCredential(KEY, style="bearer", source="OPENAI_API_KEY")
    assert await credential.headers() == {"Authorization": f"Bearer {KEY}"}


def test_an_api_key_is_described_by_its_source_and_length_only() -> None:
    credential = ApiKeyCredential(KEY)
    assert (
        credential.describe()
        == "API key from AZURE_OPENAI_API_KEY (32 characters), sent in the api-key header"
    )
    for text in (credential.describe(), repr(credential), str(credential)):
        assert KEY not in text
        assert KEY[-4:] not in text
        assert KEY[:4] not in text


def test_a_bearer_key_description_names_the_authorization_header() -> None:
    credential = ApiKeyCredential("sk-abc", style="bearer", source="OPENAI_API_KEY")
    assert credential.describe() == (
        "API key from OPENAI_API_KEY (6 characters), sent in the Authorization: Bearer header"
    )


@pytest.mark.parametrize("key", ["", "abc def", "abc\ndef", "abc\x00def"])
def test_an_empty_or_malformed_key_is_a_config_error_that_does_not_repeat_it(key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        ApiKeyCredential(key)
    assert caught.value.variable == "AZURE_OPENAI_API_KEY"
    assert str(caught.value) == (
        "AZURE_OPENAI_API_KEY is empty or contains spaces or control characters; "
        "paste the key exactly as the portal shows it."
    )


@pytest.mark.asyncio
async def test_closing_an_api_key_credential_is_harmless() -> None:
    credential = ApiKeyCredential(KEY)
    await credential.close()
    assert await credential.headers() == {"api-key": KEY}


# --- Entra ID ------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_the_first_connect_fetches_a_token_for_the_scope() -> None:
    clock = FakeClock()
    fake = FakeTokenCredential(clock)
    credential = EntraCredential(fake, clock=clock)
    assert await credential.headers() == {"Authorization": "Bearer token-1"}
    assert fake.scopes == [(DEFAULT_ENTRA_SCOPE,)]


@pytest.mark.asyncio
async def test_a_configured_scope_is_the_one_requested() -> None:
    clock = FakeClock()
    fake = FakeTokenCredential(clock)
    await EntraCredential(fake, scope="https://ai.azure.com/.default", clock=clock).headers()
    assert fake.scopes == [("https://ai.azure.com/.default",)]


@pytest.mark.asyncio
async def test_the_token_is_cached_while_it_is_fresh() -> None:
    clock = FakeClock()
    fake = FakeTokenCredential(clock, lifetime_s=3600)
    credential = EntraCredential(fake, refresh_margin_s=300, clock=clock)
    await credential.headers()
    clock.now_s += 3600 - 300 - 1  # one second before the refresh margin
    assert await credential.headers() == {"Authorization": "Bearer token-1"}
    assert fake.calls == 1


@pytest.mark.asyncio
async def test_the_token_is_refreshed_at_the_margin_before_it_expires() -> None:
    clock = FakeClock()
    fake = FakeTokenCredential(clock, lifetime_s=3600)
    credential = EntraCredential(fake, refresh_margin_s=300, clock=clock)
    await credential.headers()
    clock.now_s += 3600 - 300
    assert await credential.headers() == {"Authorization": "Bearer token-2"}
    assert fake.calls == 2


@pytest.mark.asyncio
async def test_an_expired_token_is_never_reused() -> None:
    clock = FakeClock()
    fake = FakeTokenCredential(clock, lifetime_s=3600)
    credential = EntraCredential(fake, refresh_margin_s=0, clock=clock)
    assert await credential.token() == "token-1"
    clock.now_s += 3600
    assert await credential.token() == "token-2"


@pytest.mark.asyncio
async def test_concurrent_connects_share_one_fetch() -> None:
    clock = FakeClock()
    fake = FakeTokenCredential(clock, delay_s=0.05)
    credential = EntraCredential(fake, clock=clock)
    headers = await asyncio.gather(*(credential.headers() for _ in range(10)))
    assert fake.calls == 1
    assert all(h == {"Authorization": "Bearer token-1"} for h in headers)


@pytest.mark.asyncio
async def test_a_slow_fetch_does_not_block_the_event_loop() -> None:
    clock = FakeClock()
    fake = FakeTokenCredential(clock, delay_s=0.3)
    credential = EntraCredential(fake, clock=clock)
    ticks = 0
    ticks_during_fetch: list[int] = []

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    async def fetch() -> None:
        before = ticks
        await credential.headers()
        ticks_during_fetch.append(ticks - before)

    ticking = asyncio.create_task(ticker())
    try:
        await fetch()
    finally:
        ticking.cancel()
        with pytest.raises(asyncio.CancelledError):
            await ticking
    assert ticks_during_fetch[0] >= 10


@pytest.mark.asyncio
async def test_a_refused_token_is_a_config_error_that_says_what_to_do() -> None:
    clock = FakeClock()
    refused = ClientAuthenticationError(
        "DefaultAzureCredential failed to retrieve a token from the included credentials.\n"
        "Attempted credentials:\n\tEnvironmentCredential: not configured"
    )
    credential = EntraCredential(
        FakeTokenCredential(clock, error=refused), clock=clock, name="DefaultAzureCredential"
    )
    with pytest.raises(ConfigError) as caught:
        await credential.headers()
    assert caught.value.variable == "AZURE_OPENAI_API_KEY"
    assert str(caught.value) == (
        "AZURE_OPENAI_API_KEY is not set, so realtalk asked Microsoft Entra ID for a token "
        "(DefaultAzureCredential, scope https://cognitiveservices.azure.com/.default), and that failed: "
        "DefaultAzureCredential failed to retrieve a token from the included credentials. "
        "Sign in with `az login` (or give this identity access), or set AZURE_OPENAI_API_KEY."
    )


@pytest.mark.asyncio
async def test_a_failed_fetch_is_retried_at_the_next_connect() -> None:
    clock = FakeClock()
    fake = FakeTokenCredential(clock, error=ClientAuthenticationError("no"))
    credential = EntraCredential(fake, clock=clock)
    with pytest.raises(ConfigError):
        await credential.headers()
    fake.error = None
    assert await credential.headers() == {"Authorization": "Bearer token-2"}


@pytest.mark.asyncio
async def test_a_cancelled_fetch_leaves_the_credential_usable() -> None:
    clock = FakeClock()
    fake = FakeTokenCredential(clock, delay_s=10)
    credential = EntraCredential(fake, clock=clock)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):
            await credential.headers()
    fake.delay_s = 0
    assert await credential.headers() == {"Authorization": "Bearer token-2"}


@pytest.mark.asyncio
async def test_the_description_and_repr_never_contain_the_token() -> None:
    clock = FakeClock()
    credential = EntraCredential(FakeTokenCredential(clock), clock=clock)
    await credential.headers()
    assert "token-1" not in credential.describe()
    assert "token-1" not in repr(credential)
    assert credential.describe() == (
        "Microsoft Entra ID token from FakeTokenCredential "
        "(scope https://cognitiveservices.azure.com/.default), "
        "sent in the Authorization: Bearer header; set AZURE_OPENAI_API_KEY to use a key instead"
    )


@pytest.mark.asyncio
async def test_closing_closes_an_owned_token_credential() -> None:
    clock = FakeClock()
    fake = FakeTokenCredential(clock)
    await EntraCredential(fake, clock=clock).close()
    assert fake.closed


@pytest.mark.asyncio
async def test_closing_leaves_a_borrowed_token_credential_open() -> None:
    clock = FakeClock()
    fake = FakeTokenCredential(clock)
    await EntraCredential(fake, clock=clock, owns_credential=False).close()
    assert not fake.closed


@pytest.mark.asyncio
async def test_the_default_credential_is_the_async_default_azure_credential() -> None:
    credential = default_credential()
    try:
        assert type(credential).__name__ == "DefaultAzureCredential"
        assert type(credential).__module__.startswith("azure.identity.aio")
    finally:
        await credential.close()
