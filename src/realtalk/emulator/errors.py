"""The Realtime API's error catalogue, as the emulator sends it in ``error`` events.

Codes and messages follow §3.4 of the protocol notes word for word where a real message was seen
(``missing_required_parameter``, ``integer_below_min_value``, ``input_audio_buffer_commit_empty``,
``conversation_already_has_active_response``, ``response_cancel_not_active``, the truncation texts,
``session_expired``). The rest use the OpenAI API's general validation wording
("Unknown parameter: 'x'.", "Invalid type for 'x': expected ...", "Invalid value: 'x'. Supported
values are: ...") and are marked "[unconfirmed]" below: a client must branch on ``code``, never
on the message text.

Every constructor returns a :class:`RealtimeApiError`; the session turns it into an ``error`` event
that echoes the client's ``event_id``. Raising it never closes the connection.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

__all__ = ["ErrorType", "RealtimeApiError"]

ErrorType = Literal["invalid_request_error", "server_error", "tokens", "requests"]

MIN_COMMIT_MS = 100


class RealtimeApiError(Exception):
    """One ``error`` event's ``error`` object: ``type``, ``code``, ``message``, ``param``."""

    def __init__(
        self,
        code: str | None,
        message: str,
        *,
        param: str | None = None,
        error_type: ErrorType | str = "invalid_request_error",
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.param = param
        self.error_type = error_type

    def to_object(self, client_event_id: str | None) -> dict[str, Any]:
        return {
            "type": self.error_type,
            "code": self.code,
            "message": self.message,
            "param": self.param,
            "event_id": client_event_id,
        }


def _quote_list(values: Sequence[object]) -> str:
    quoted = [f"'{v}'" for v in values]
    if len(quoted) <= 1:
        return "".join(quoted)
    if len(quoted) == 2:
        return f"{quoted[0]} and {quoted[1]}"
    return ", ".join(quoted[:-1]) + f", and {quoted[-1]}"


# --- request validation (OpenAI's general wording) -------------------------------------------


def missing_required_parameter(param: str) -> RealtimeApiError:
    return RealtimeApiError(
        "missing_required_parameter", f"Missing required parameter: '{param}'.", param=param
    )


def unknown_parameter(param: str) -> RealtimeApiError:
    # [unconfirmed] text; the code is what TanStack/ai#699 reports for beta fields in GA.
    return RealtimeApiError("unknown_parameter", f"Unknown parameter: '{param}'.", param=param)


def invalid_type(param: str, expected: str, got: str) -> RealtimeApiError:
    return RealtimeApiError(
        "invalid_type",
        f"Invalid type for '{param}': expected {expected}, but got {got} instead.",
        param=param,
    )


def invalid_value(param: str, value: object, supported: Sequence[object] = ()) -> RealtimeApiError:
    message = f"Invalid value: '{value}'."
    if supported:
        message += f" Supported values are: {_quote_list(supported)}."
    return RealtimeApiError("invalid_value", message, param=param)


def invalid_value_message(param: str, message: str) -> RealtimeApiError:
    return RealtimeApiError("invalid_value", message, param=param)


def below_min_value(param: str, minimum: float, got: float, *, integer: bool) -> RealtimeApiError:
    kind = "integer" if integer else "decimal"
    return RealtimeApiError(
        f"{kind}_below_min_value",
        f"Invalid '{param}': {kind} below minimum value. "
        f"Expected a value >= {minimum:g}, but got {got:g} instead.",
        param=param,
    )


def above_max_value(param: str, maximum: float, got: float, *, integer: bool) -> RealtimeApiError:
    kind = "integer" if integer else "decimal"
    return RealtimeApiError(
        f"{kind}_above_max_value",
        f"Invalid '{param}': {kind} above maximum value. "
        f"Expected a value <= {maximum:g}, but got {got:g} instead.",
        param=param,
    )


def string_above_max_length(param: str, maximum: int, got: int) -> RealtimeApiError:
    return RealtimeApiError(
        "string_above_max_length",
        f"Invalid '{param}': string too long. Expected a string with maximum length {maximum}, "
        f"but got a string with length {got} instead.",
        param=param,
    )


# --- envelope ----------------------------------------------------------------------------------


def missing_type() -> RealtimeApiError:
    # The openapi `error` example, verbatim.
    return RealtimeApiError("invalid_event", "The 'type' field is missing.")


def not_an_object() -> RealtimeApiError:
    # [unconfirmed] text.
    return RealtimeApiError("invalid_event", "Expected the event to be a JSON object.")


def invalid_json(detail: str) -> RealtimeApiError:
    # [unconfirmed] code and text.
    return RealtimeApiError("invalid_json", f"We could not parse the JSON body of your event: {detail}.")


def binary_frame() -> RealtimeApiError:
    # [unconfirmed]: the API only speaks JSON text frames.
    return RealtimeApiError("invalid_event", "Binary frames are not supported; send JSON text frames.")


def event_too_large(size_bytes: int, max_bytes: int) -> RealtimeApiError:
    # [unconfirmed]: only the 15 MiB per-append limit is documented.
    return RealtimeApiError(
        "invalid_event", f"The event is too large: {size_bytes} bytes; the maximum is {max_bytes} bytes."
    )


def unknown_event_type(event_type: str, supported: Sequence[str]) -> RealtimeApiError:
    return invalid_value("type", event_type, supported)


# --- input audio buffer -------------------------------------------------------------------------


def commit_empty(buffered_ms: float) -> RealtimeApiError:
    return RealtimeApiError(
        "input_audio_buffer_commit_empty",
        "Error committing input audio buffer: buffer too small. Expected at least "
        f"{MIN_COMMIT_MS}ms of audio, but buffer only has {buffered_ms:.2f}ms of audio.",
    )


def invalid_audio(detail: str) -> RealtimeApiError:
    # [unconfirmed] text.
    return RealtimeApiError("invalid_value", f"Invalid 'audio': {detail}.", param="audio")


# --- conversation -------------------------------------------------------------------------------


def item_not_found(operation: str, item_id: str) -> RealtimeApiError:
    # [unconfirmed] codes (item_<op>_invalid_item_id) and texts.
    verbs = {"truncate": "truncating", "delete": "deleting", "retrieve": "retrieving"}
    return RealtimeApiError(
        f"item_{operation}_invalid_item_id",
        f"Error {verbs.get(operation, operation)} item: the item with id '{item_id}' does not exist.",
        param="item_id",
    )


def previous_item_not_found(item_id: str) -> RealtimeApiError:
    # [unconfirmed] code and text.
    return RealtimeApiError(
        "invalid_value",
        f"Error adding item: the previous item with id '{item_id}' does not exist.",
        param="previous_item_id",
    )


def duplicate_item_id(item_id: str) -> RealtimeApiError:
    # [unconfirmed] code and text.
    return RealtimeApiError(
        "invalid_value", f"Error adding item: an item with id '{item_id}' already exists.", param="item.id"
    )


def truncate_beyond_audio(audio_ms: int, audio_end_ms: int) -> RealtimeApiError:
    # The text is as seen on the wire; no code was seen with it, the nearest documented one is used.
    return RealtimeApiError(
        "invalid_value",
        f"Audio content of {audio_ms}ms is already shorter than {audio_end_ms}ms",
        param="audio_end_ms",
    )


def truncate_unsupported_content() -> RealtimeApiError:
    return RealtimeApiError("unsupported_content_type", "Only model output audio messages can be truncated")


def client_audio_for_assistant() -> RealtimeApiError:
    # [unconfirmed]: §2.3 says assistant audio cannot be created by the client.
    return RealtimeApiError(
        "invalid_value",
        "Assistant messages created by the client cannot contain audio.",
        param="item.content",
    )


# --- session ------------------------------------------------------------------------------------


def cannot_update_voice() -> RealtimeApiError:
    return RealtimeApiError(
        "cannot_update_voice",
        "Cannot update a conversation's voice if assistant audio is present.",
        param="session.audio.output.voice",
    )


def cannot_change_model(current: str, requested: str) -> RealtimeApiError:
    # [unconfirmed] text; §2.2 says the model cannot be changed.
    return RealtimeApiError(
        "invalid_value",
        f"Cannot change the session's model from '{current}' to '{requested}'.",
        param="session.model",
    )


def cannot_change_session_type(requested: str) -> RealtimeApiError:
    # [unconfirmed] text.
    return RealtimeApiError(
        "invalid_value",
        f"Cannot change the session's type from 'realtime' to '{requested}'.",
        param="session.type",
    )


def both_modalities(param: str) -> RealtimeApiError:
    # [unconfirmed] text; the SDK documents that audio and text cannot be requested together.
    return RealtimeApiError(
        "invalid_value",
        f"Invalid '{param}': 'audio' and 'text' cannot be requested at the same time.",
        param=param,
    )


def session_expired(limit_s: float) -> RealtimeApiError:
    return RealtimeApiError(
        "session_expired", f"Your session hit the maximum duration of {limit_s / 60:g} minutes."
    )


# --- responses ----------------------------------------------------------------------------------


def active_response(response_id: str) -> RealtimeApiError:
    return RealtimeApiError(
        "conversation_already_has_active_response",
        f"Conversation already has an active response in progress: {response_id}. "
        "Wait until the response is finished before creating a new one.",
    )


def cancel_not_active() -> RealtimeApiError:
    return RealtimeApiError("response_cancel_not_active", "Cancellation failed: no active response found")


def rate_limit_exceeded(
    deployment: str, limit: int, used: int, requested: int, reset_s: float
) -> RealtimeApiError:
    # [unconfirmed] for Realtime: the shape of the REST API's 429 body (type "tokens").
    return RealtimeApiError(
        "rate_limit_exceeded",
        f"Rate limit reached for {deployment} on tokens per min (TPM): Limit {limit}, Used {used}, "
        f"Requested {requested}. Please try again in {reset_s:.3g}s.",
        error_type="tokens",
    )


def server_error() -> RealtimeApiError:
    return RealtimeApiError(
        "server_error",
        "The server had an error while processing your request. Sorry about that!",
        error_type="server_error",
    )
