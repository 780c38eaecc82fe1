"""The ledger's tables, as SQLAlchemy Core ``MetaData``: one row per session, one per response.

The same schema runs on SQLite and PostgreSQL. Two column types make that portable without
giving up exactness:

* ``Money``: USD as ``Decimal`` to the nano-dollar (9 places). PostgreSQL stores ``NUMERIC(18, 9)``;
  SQLite has no decimal type (its ``NUMERIC`` is a float), so there the column is an integer
  count of nano-dollars. ``SUM`` is exact on both, and a value never passes through a float.
  Every figure the core computes at list prices (a price with two decimals per 1M tokens) is a
  multiple of 1e-8 USD, so it is stored exactly; only the unheard-audio share, a fraction of
  a turn's audio, is rounded (half to even) to the nano-dollar.
* ``UTCDateTime``: timezone-aware UTC datetimes in and out. PostgreSQL stores ``timestamptz``;
  SQLite stores the UTC wall time as text, which sorts and compares correctly.

The migrations (``migrations/versions``) create exactly these tables; a test compares them.
"""

from __future__ import annotations

import decimal
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Final

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    text,
)
from sqlalchemy.types import TypeDecorator, TypeEngine

__all__ = [
    "MONEY_COLUMNS",
    "MONEY_PLACES",
    "TOKEN_COLUMNS",
    "VERSION_TABLE",
    "Money",
    "UTCDateTime",
    "metadata",
    "responses",
    "session_leases",
    "sessions",
]

MONEY_PLACES: Final = 9
_NANO: Final = Decimal(1).scaleb(-MONEY_PLACES)
_PER_USD: Final = 10**MONEY_PLACES
# Alembic's version table, named for the ledger so a database shared with another Alembic-managed
# application keeps the two histories apart.
VERSION_TABLE: Final = "realtalk_ledger_version"


class Money(TypeDecorator[Decimal]):
    """USD as ``Decimal``, rounded half to even to ``MONEY_PLACES`` decimals, never a float."""

    impl = Numeric(18, MONEY_PLACES, asdecimal=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(BigInteger())
        return dialect.type_descriptor(Numeric(18, MONEY_PLACES, asdecimal=True))

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> Decimal | int | None:
        if value is None:
            return None
        if not isinstance(value, Decimal) or not value.is_finite():
            raise TypeError(f"money must be a finite Decimal, got {value!r}")
        ctx = decimal.Context(prec=60, rounding=decimal.ROUND_HALF_EVEN)
        exact = value.quantize(_NANO, context=ctx)
        if dialect.name == "sqlite":
            return int(exact.scaleb(MONEY_PLACES, context=ctx))
        return exact

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        if dialect.name == "sqlite":
            # An integer of nano-dollars (SUM of integers is an integer too).
            return Decimal(int(value)).scaleb(-MONEY_PLACES)
        return Decimal(value)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware datetime, stored and returned in UTC; a naive datetime is refused."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"the ledger stores timezone-aware datetimes only, got naive {value!r}")
        utc = value.astimezone(UTC)
        # SQLite keeps the wall time as text: UTC without an offset sorts and compares correctly.
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


metadata = MetaData()

sessions = Table(
    "sessions",
    metadata,
    Column("session_id", String(128), primary_key=True),
    Column("user", String(256), nullable=True),
    Column("deployment", String(256), nullable=False),
    Column("pricing_model", String(128), nullable=False),
    # NULL when the session's own start row was lost (queue full) and a response row stood in.
    Column("transport", String(32), nullable=True),
    Column("client", String(32), nullable=True),
    Column("started_at", UTCDateTime(), nullable=False),
    Column("ended_at", UTCDateTime(), nullable=True),
    Column("end_reason", String(256), nullable=True),
    Index("ix_sessions_started_at", "started_at"),
    Index("ix_sessions_user_started_at", "user", "started_at"),
)

TOKEN_COLUMNS: Final = (
    "text_in",
    "text_cached",
    "audio_in",
    "audio_cached",
    "image_in",
    "image_cached",
    "text_out",
    "audio_out",
)
MONEY_COLUMNS: Final = (
    "cost_usd",
    "text_in_usd",
    "text_cached_usd",
    "text_out_usd",
    "audio_in_usd",
    "audio_cached_usd",
    "audio_out_usd",
    "image_in_usd",
    "image_cached_usd",
    "tools_usd",
    "unheard_audio_usd",
)

responses = Table(
    "responses",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("session_id", String(128), ForeignKey("sessions.session_id"), nullable=False),
    Column("response_id", String(128), nullable=True),
    Column("user", String(256), nullable=True),
    Column("deployment", String(256), nullable=False),
    Column("pricing_model", String(128), nullable=False),
    Column("status", String(32), nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    # Token counts as in protocol.cost.Usage: the cached ones are subsets of their *_in.
    *(Column(name, Integer, nullable=False) for name in TOKEN_COLUMNS),
    # cost_usd is the turn's total (the sum of the parts but unheard_audio_usd, which is a share
    # of audio_out_usd); all in USD.
    *(Column(name, Money(), nullable=False) for name in MONEY_COLUMNS),
    Column("audio_generated_ms", Integer, nullable=False),
    Column("audio_heard_ms", Integer, nullable=True),
    Column("voice_to_voice_ms", Float, nullable=True),
    Index("ix_responses_session_id", "session_id"),
    Index("ix_responses_created_at", "created_at"),
    Index("ix_responses_user_created_at", "user", "created_at"),
    Index("ix_responses_deployment_created_at", "deployment", "created_at"),
    # A replayed write (a retried batch, a reconnect that reports a response again) cannot count
    # twice; responses without an id are always new rows.
    Index(
        "uq_responses_session_response",
        "session_id",
        "response_id",
        unique=True,
        sqlite_where=text("response_id IS NOT NULL"),
        postgresql_where=text("response_id IS NOT NULL"),
    ),
)

# Open sessions, one row each while it lasts (revision 0002): what every replica of the gateway
# counts for the per-user limit on concurrent sessions (``realtalk.ledger.leases``). A row is
# renewed while its session runs; one whose replica died expires at ``expires_at``.
session_leases = Table(
    "session_leases",
    metadata,
    Column("session_id", String(128), primary_key=True),
    Column("user", String(256), nullable=False),
    Column("holder", String(128), nullable=False),
    Column("started_at", UTCDateTime(), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False),
    Index("ix_session_leases_user_expires_at", "user", "expires_at"),
    Index("ix_session_leases_holder", "holder"),
)
