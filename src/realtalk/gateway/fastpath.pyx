# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The gateway's per-frame fast path, compiled: audio appends in, audio deltas out.

Optional: ``relay.py`` uses it when this extension was built (``pip install`` builds it where
Cython and a C compiler are at hand; ``realtalk.gateway.relay.COMPILED_FAST_PATH`` says), and runs
the same frames through its own Python otherwise. Nothing is decided here that Python does not decide
the same way: this module only recognises the two frame shapes that are nearly all of a voice
session's traffic, exactly as ``framing.py`` defines them, and then makes the same calls the
Python path makes (the protocol core, the rate limiter, the counters). Every other frame, and every
frame that arrives in any other state than plain relaying, is left to Python untouched. The tests
run the gateway both ways and compare the shape checks byte for byte (tests/gateway/test_fastpath.py).

Why compiled: a relayed audio event costs the gateway process about 50 µs, two thirds of it the
kernel's (two socket calls and a wake-up). Of the rest, the interpreter running about twenty Python
frames per event pair (frame parsing, regular expressions, the base64 alphabet check, counters) was
most; this module does those steps in C with no Python frame, leaving the calls into the protocol
core, which makes the decisions (bench/gateway.py, docs/gateway.md#what-it-costs).
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.unicode cimport PyUnicode_DecodeASCII
from libc.stdint cimport uint8_t, uint64_t
from libc.string cimport memcmp, memcpy

from time import perf_counter as _perf_counter

from picows import WSMsgType

_TEXT = WSMsgType.TEXT

# framing.py's two append prefixes (our UI's compact JSON, the SDK's json.dumps defaults).
cdef bytes _UI_PREFIX = b'{"type":"input_audio_buffer.append","audio":"'
cdef bytes _SDK_PREFIX = b'{"type": "input_audio_buffer.append", "audio": "'
cdef bytes _EVENT_ID_KEY = b'"event_id":'
# framing.py's _DELTA_HEAD, piece by piece.
cdef bytes _DELTA_TYPE = b'{"type":"response.output_audio.delta",'
cdef bytes _DELTA_EVENT_ID = b'"event_id":"'
cdef bytes _DELTA_RESPONSE_ID = b'"response_id":"'
cdef bytes _DELTA_ITEM_ID = b'","item_id":"'
cdef bytes _DELTA_OUTPUT_INDEX = b'",' b'"output_index":'
cdef bytes _DELTA_CONTENT_INDEX = b',"content_index":'
cdef bytes _DELTA_DELTA = b',"delta":"'

cdef uint8_t _BASE64[256]      # A-Z a-z 0-9 + /
cdef uint8_t _APPEND_ID[256]   # an append's event_id: [A-Za-z0-9_.:-]
cdef uint8_t _DELTA_ID[256]    # a delta's ids: printable ASCII without '"' and '\'


cdef void _tables() noexcept:
    cdef int c
    for c in range(256):
        alnum = (65 <= c <= 90) or (97 <= c <= 122) or (48 <= c <= 57)
        _BASE64[c] = alnum or c == 43 or c == 47
        _APPEND_ID[c] = alnum or c in (95, 46, 58, 45)
        _DELTA_ID[c] = 0x20 <= c <= 0x7E and c != 34 and c != 92


_tables()


cdef inline bint _starts(const uint8_t* p, Py_ssize_t n, Py_ssize_t at, bytes text) noexcept:
    cdef Py_ssize_t size = PyBytes_GET_SIZE(text)
    return at + size <= n and memcmp(p + at, PyBytes_AS_STRING(text), size) == 0


cdef Py_ssize_t _append_audio_bytes(const uint8_t* p, Py_ssize_t n) noexcept:
    """framing.append_audio_bytes on a buffer: the decoded audio size, or -1."""
    cdef Py_ssize_t start, end, k, pad, id_start
    if _starts(p, n, 0, _UI_PREFIX):
        start = PyBytes_GET_SIZE(_UI_PREFIX)
    elif _starts(p, n, 0, _SDK_PREFIX):
        start = PyBytes_GET_SIZE(_SDK_PREFIX)
    else:
        return -1
    end = start
    while end < n and _BASE64[p[end]]:
        end += 1
    pad = 0
    while end < n and pad < 2 and p[end] == 61:  # "=" at the end only
        end += 1
        pad += 1
    if end >= n or p[end] != 34 or (end - start) % 4:  # the closing quote
        return -1
    k = end + 1
    if k < n and p[k] == 44:  # , ?"event_id": ?"<id>"
        k += 1
        if k < n and p[k] == 32:
            k += 1
        if not _starts(p, n, k, _EVENT_ID_KEY):
            return -1
        k += PyBytes_GET_SIZE(_EVENT_ID_KEY)
        if k < n and p[k] == 32:
            k += 1
        if k >= n or p[k] != 34:
            return -1
        k += 1
        id_start = k
        while k < n and _APPEND_ID[p[k]]:
            k += 1
        if k == id_start or k - id_start > 128 or k >= n or p[k] != 34:
            return -1
        k += 1
    if k != n - 1 or p[k] != 125:  # "}" and nothing after it
        return -1
    k = (end - start) // 4 * 3 - pad
    return -1 if k & 1 else k  # odd: not whole PCM16 samples, the full check decides


cdef Py_ssize_t _id_end(const uint8_t* p, Py_ssize_t n, Py_ssize_t at, Py_ssize_t least) noexcept:
    """Where a delta id of ``least``-128 id bytes that starts at ``at`` ends (its '"'), or -1."""
    cdef Py_ssize_t k = at
    while k < n and k - at <= 128 and _DELTA_ID[p[k]]:
        k += 1
    if k - at < least or k - at > 128 or k >= n or p[k] != 34:
        return -1
    return k


cdef Py_ssize_t _digits_end(const uint8_t* p, Py_ssize_t n, Py_ssize_t at) noexcept:
    cdef Py_ssize_t k = at
    while k < n and k - at < 10 and 48 <= p[k] <= 57:
        k += 1
    if k == at or k - at > 9:
        return -1
    return k


def append_audio_bytes(bytes data):
    """The compiled twin of ``framing.append_audio_bytes`` (tests compare the two)."""
    return _append_audio_bytes(<const uint8_t*>PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data))


def match_audio_delta(bytes data):
    """The compiled twin of ``framing.match_audio_delta`` for the documented shape only: the ids
    and audio size, or ``None`` where Python's scanner must decide (tests compare the two)."""
    return _match_delta(data)


cdef object _match_delta(bytes data):
    """The shape of framing._DELTA_HEAD, then the base64 up to its quote without an escape:
    ``(item_id, response_id, decoded audio size)``, or ``None`` if the frame is not plainly that."""
    cdef const uint8_t* p = <const uint8_t*>PyBytes_AS_STRING(data)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(data)
    cdef Py_ssize_t k, response_start, response_end, item_start, item_end, start, end, pad
    if not _starts(p, n, 0, _DELTA_TYPE):
        return None
    k = PyBytes_GET_SIZE(_DELTA_TYPE)
    if _starts(p, n, k, _DELTA_EVENT_ID):
        k = _id_end(p, n, k + PyBytes_GET_SIZE(_DELTA_EVENT_ID), 0)
        if k < 0 or k + 1 >= n or p[k + 1] != 44:
            return None
        k += 2
    if not _starts(p, n, k, _DELTA_RESPONSE_ID):
        return None
    response_start = k + PyBytes_GET_SIZE(_DELTA_RESPONSE_ID)
    response_end = _id_end(p, n, response_start, 1)
    if response_end < 0 or not _starts(p, n, response_end, _DELTA_ITEM_ID):
        return None
    item_start = response_end + PyBytes_GET_SIZE(_DELTA_ITEM_ID)
    item_end = _id_end(p, n, item_start, 1)
    if item_end < 0 or not _starts(p, n, item_end, _DELTA_OUTPUT_INDEX):
        return None
    k = _digits_end(p, n, item_end + PyBytes_GET_SIZE(_DELTA_OUTPUT_INDEX))
    if k < 0 or not _starts(p, n, k, _DELTA_CONTENT_INDEX):
        return None
    k = _digits_end(p, n, k + PyBytes_GET_SIZE(_DELTA_CONTENT_INDEX))
    if k < 0 or not _starts(p, n, k, _DELTA_DELTA):
        return None
    start = k + PyBytes_GET_SIZE(_DELTA_DELTA)
    end = start
    while end < n and p[end] != 34:
        if p[end] == 92:  # an escape: not plainly base64, Python decides
            return None
        end += 1
    if end >= n:
        return None
    pad = 0
    if end - start >= 2:
        pad = (p[end - 1] == 61) + (p[end - 2] == 61)
    return (
        PyUnicode_DecodeASCII(<const char*>p + item_start, item_end - item_start, NULL),
        PyUnicode_DecodeASCII(<const char*>p + response_start, response_end - response_start, NULL),
        (end - start) // 4 * 3 - pad,
    )


cdef bytes _unmask(const uint8_t* masked, Py_ssize_t n, const uint8_t* key):
    cdef bytes out = PyBytes_FromStringAndSize(NULL, n)
    cdef uint8_t* q = <uint8_t*>PyBytes_AS_STRING(out)
    cdef uint64_t key8, word
    cdef Py_ssize_t i = 0
    memcpy(&key8, key, 4)
    memcpy((<uint8_t*>&key8) + 4, key, 4)
    while i + 8 <= n:
        memcpy(&word, masked + i, 8)
        word ^= key8
        memcpy(q + i, &word, 8)
        i += 8
    while i < n:
        q[i] = masked[i] ^ key[i & 3]
        i += 1
    return out


cdef class FastPath:
    """One session's fast path. The session keeps the flags current (``set_state``) and tells it the
    upstream transport; ``client_read`` and ``upstream_frame`` take the frames."""

    cdef object _session
    cdef object _audio_appended
    cdef object _receive_audio_delta
    cdef object _allow
    cdef object _traffic_append
    cdef object _traffic_delta
    cdef object _client_send
    cdef object _upstream
    cdef object _upstream_send
    cdef Py_ssize_t _max_bytes
    cdef bint _ui
    cdef bint _appends      # configured, not ending, not draining: appends may take the fast path
    cdef bint _deltas       # not ending: deltas may take the fast path
    cdef bytes _partial     # the start of a frame that has not fully arrived
    cdef readonly Py_ssize_t appends  # frames relayed here (the Python path counts the rest)
    cdef readonly Py_ssize_t deltas

    def __init__(self, session, core, limiter, traffic, client, *, bint ui, Py_ssize_t max_bytes):
        self._session = session
        self._audio_appended = core.audio_appended
        self._receive_audio_delta = core.receive_audio_delta
        self._allow = limiter.allow
        self._traffic_append = traffic.append
        self._traffic_delta = traffic.delta
        self._client_send = client.send_text
        self._upstream = None
        self._upstream_send = None
        self._ui = ui
        self._max_bytes = max_bytes
        self._appends = False
        self._deltas = True
        self._partial = None

    def set_state(self, bint configured, bint ending, bint draining):
        self._appends = configured and not ending and not draining
        self._deltas = not ending

    def set_upstream(self, transport):
        self._upstream = transport
        self._upstream_send = transport.send

    def client_read(self, bytes data):
        """One read from the client's socket, taken at a frame boundary. The fast-path appends at
        its start (whole masked text frames) are relayed here, and the start of one that has not
        fully arrived is kept for the next read; returns the rest, for the frame reader."""
        cdef const uint8_t* p
        cdef Py_ssize_t n, pos = 0, length, audio_bytes
        cdef bytes payload
        if self._partial is not None:
            data = self._partial + data
            self._partial = None
        if not self._appends:
            return data
        p = <const uint8_t*>PyBytes_AS_STRING(data)
        n = PyBytes_GET_SIZE(data)
        # FIN|TEXT, masked, a 16-bit length (126-65535 bytes: an audio chunk)
        while self._appends and pos < n and p[pos] == 0x81:
            if n - pos < 4:  # not even the length yet
                if n - pos >= 2 and p[pos + 1] != 0xFE:
                    break
                self._partial = data[pos:]
                return b""
            if p[pos + 1] != 0xFE:
                break
            length = (p[pos + 2] << 8) | p[pos + 3]
            if length > self._max_bytes:
                break
            if pos + 8 + length > n:
                # An audio chunk split across reads (a client sending faster than real time).
                self._partial = data[pos:]
                return b""
            payload = _unmask(p + pos + 8, length, p + pos + 4)
            audio_bytes = _append_audio_bytes(<const uint8_t*>PyBytes_AS_STRING(payload), length)
            if audio_bytes < 0:
                break
            pos += 8 + length
            self._append(payload, length, audio_bytes)
        return data[pos:] if pos else data

    cdef void _append(self, bytes payload, Py_ssize_t length, Py_ssize_t audio_bytes) noexcept:
        # relay.GatewaySession.client_text and _client_frame for a checked append, in their order.
        try:
            received_s = _perf_counter()
            session = self._session
            session.last_client_s = received_s
            if not self._allow(received_s):
                session.refuse_rate_limited(payload)
                return
            self.appends += 1
            self._audio_appended(audio_bytes, received_s)
            upstream = self._upstream
            if upstream is not None and not upstream.is_close_frame_sent:
                self._upstream_send(_TEXT, payload)
            self._traffic_append(length, _perf_counter() - received_s)
        except Exception as exc:  # a bug must end this session, not the server
            self._session.failed(exc)

    def upstream_frame(self, frame):
        """One whole text frame from upstream (a picows ``WSFrame``). Audio deltas in the documented
        shape are forwarded here; any other text goes to the session's ``upstream_text``."""
        if not self._deltas:
            return  # the session ended: nothing more is relayed
        data = frame.get_payload_as_bytes()
        try:
            received_s = _perf_counter()
            delta = _match_delta(data)
            if delta is None:
                self._session.upstream_text(data)
                return
            item_id, response_id, audio_bytes = <tuple>delta
            self.deltas += 1
            if self._receive_audio_delta(item_id, response_id, audio_bytes, received_s) or not self._ui:
                self._client_send(data)
                self._traffic_delta(PyBytes_GET_SIZE(data), _perf_counter() - received_s)
            else:
                self._traffic_delta(PyBytes_GET_SIZE(data), None)
        except Exception as exc:
            self._session.failed(exc)
