# Types of the compiled module built from fastpath.pyx (absent when it was not built).
from typing import Any

from picows import WSFrame, WSTransport

def append_audio_bytes(data: bytes) -> int: ...
def match_audio_delta(data: bytes) -> tuple[str, str, int] | None: ...

class FastPath:
    appends: int
    deltas: int
    def __init__(
        self,
        session: Any,
        core: Any,
        limiter: Any,
        traffic: Any,
        client: Any,
        *,
        ui: bool,
        max_bytes: int,
    ) -> None: ...
    def set_state(self, configured: bool, ending: bool, draining: bool) -> None: ...
    def set_upstream(self, transport: WSTransport) -> None: ...
    def client_read(self, data: bytes) -> bytes: ...
    def upstream_frame(self, frame: WSFrame) -> None: ...
