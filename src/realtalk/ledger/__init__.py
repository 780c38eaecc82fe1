"""The usage ledger: one row per session and per billed response, in SQLite or PostgreSQL.

``Ledger`` writes without ever blocking the caller (a bounded queue, batched commits, each row
durable within about ``flush_interval_s``); ``realtalk.ledger.queries`` reads it back (spend by
user, deployment and day); ``upgrade`` runs the schema migrations (``realtalk ledger upgrade``).

::

    ledger = await Ledger.open("sqlite+aiosqlite:////home/me/.local/share/realtalk/ledger.db")
    ledger.session_started(SessionRecord(...))
    ledger.response_done(ResponseRecord.from_turn(turn, session_id=..., ...))
    ledger.session_ended(session_id, ended_at, "client closed")
    await ledger.aclose()

The ledger takes values, never settings: ``cli/`` and ``gateway/`` pick the URL
(``REALTALK_LEDGER_URL``, else ``realtalk.settings.default_ledger_url()``).
"""

from realtalk.ledger.database import ledger_url, redact_url
from realtalk.ledger.migrate import UpgradeResult, head_revision, upgrade
from realtalk.ledger.queries import responses_between, session_count, spend_usd
from realtalk.ledger.records import ResponseHeard, ResponseRecord, ResponseRow, SessionEnd, SessionRecord
from realtalk.ledger.writer import Ledger

__all__ = [
    "Ledger",
    "ResponseHeard",
    "ResponseRecord",
    "ResponseRow",
    "SessionEnd",
    "SessionRecord",
    "UpgradeResult",
    "head_revision",
    "ledger_url",
    "redact_url",
    "responses_between",
    "session_count",
    "spend_usd",
    "upgrade",
]
