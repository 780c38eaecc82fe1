/**
 * The page's WebRTC call: the microphone and the agent's voice go straight between the browser
 * and the Realtime service; the gateway only sees the offer and watches the call from its side.
 *
 * - `POST api/realtime/webrtc?realtalk_ui=1` with the SDP offer (the HttpOnly session cookie
 *   authenticates it); the gateway mints the short-lived secret, posts the offer upstream and
 *   answers with the SDP answer and `Location: …/calls/<id>`. No key or secret reaches this code.
 * - The upstream's events arrive on the `oai-events` data channel, the same events as on the
 *   WebSocket except the audio (it is on the media track).
 * - The gateway's own messages (`realtalk.cost`, `.transcript`, `.tool`, `.notice`, and
 *   `realtalk.ended` with why the call ended) come as server-sent events from
 *   `api/realtime/calls/<id>/events`, and go to the same handler as the data channel's.
 * - Barge-in is the service's: over WebRTC it tracks what was played, cuts the reply and says
 *   `output_audio_buffer.cleared`; the page sends no truncation. The browser's own echo
 *   cancellation works on this path (the voice is played by the browser's WebRTC stack).
 *
 * Same callbacks as `Connection`, so the controller drives either; `onFallback(why)` asks it
 * to use the WebSocket instead (no WebRTC in this browser or on this gateway, or no media path).
 *
 * @module webrtc
 */

/** How long ICE gathering may take before the offer is sent with what was found. */
const GATHER_TIMEOUT_MS = 2000;
/** How long the media path may take to connect before the page falls back to the WebSocket. */
const CONNECT_TIMEOUT_MS = 10000;
/** How long a "disconnected" peer connection may stay so before the call counts as lost. */
const DISCONNECTED_GRACE_MS = 4000;

/** @returns {boolean} whether this browser can make a WebRTC call */
export function webrtcAvailable() {
  return typeof RTCPeerConnection === "function";
}

/** @param {string} path @returns {string} a gateway URL relative to the page (works under a path prefix) */
function gatewayUrl(path) {
  return new URL(path, document.baseURI).href;
}

/**
 * @typedef {import("./connection.js").ConnectionCallbacks & {
 *   onFallback: (why: string) => void,
 * }} RtcCallbacks
 */

export class RtcConnection {
  /** @param {RtcCallbacks} callbacks @param {HTMLAudioElement} speaker */
  constructor(callbacks, speaker) {
    this.callbacks = callbacks;
    this.speaker = speaker;
    /** @type {RTCPeerConnection | null} */
    this.pc = null;
    /** @type {RTCDataChannel | null} */
    this.channel = null;
    /** @type {EventSource | null} */
    this.feed = null;
    /** @type {RTCRtpSender | null} */
    this.sender = null;
    /** @type {string | null} */
    this.callId = null;
    this.wanted = false;
    this.opened = false;
    /** @type {{code: number, reason: string} | null} why the gateway ended the call */
    this.ended = null;
    /** @type {ReturnType<typeof setTimeout> | null} */
    this.timer = null;
    this.chunksSent = 0;
    this.chunksDropped = 0;
    /** @type {number | null} when the user's speech ended (for voice-to-voice latency) */
    this.speechStoppedAt = null;
  }

  /** @param {MediaStream} microphone */
  async open(microphone) {
    this.wanted = true;
    this.opened = false;
    this.ended = null;
    const pc = new RTCPeerConnection();
    this.pc = pc;
    const track = microphone.getAudioTracks()[0];
    this.sender = pc.addTrack(track, microphone);
    pc.ontrack = (event) => {
      this.speaker.srcObject = event.streams[0] ?? new MediaStream([event.track]);
      void this.speaker.play().catch(() => undefined);
    };
    const channel = pc.createDataChannel("oai-events");
    this.channel = channel;
    channel.onopen = () => {
      if (this.timer !== null) clearTimeout(this.timer);
      this.timer = null;
      this.opened = true;
      this.callbacks.onOpen();
    };
    channel.onmessage = (message) => this.receive(message.data);
    channel.onclose = () => this.lost("the call's data channel closed");
    pc.onconnectionstatechange = () => {
      const state = pc.connectionState;
      if (state === "failed") this.lost("the media connection failed");
      else if (state === "disconnected") {
        setTimeout(() => {
          if (this.pc === pc && pc.connectionState === "disconnected") this.lost("the media connection was lost");
        }, DISCONNECTED_GRACE_MS);
      }
    };
    let answer;
    try {
      await pc.setLocalDescription(await pc.createOffer());
      await this.gathered(pc);
      answer = await fetch(gatewayUrl("api/realtime/webrtc?realtalk_ui=1"), {
        method: "POST",
        body: pc.localDescription?.sdp ?? "",
        headers: { "Content-Type": "application/sdp" },
        credentials: "same-origin",
      });
    } catch (error) {
      this.teardown();
      if (this.wanted) this.callbacks.onFallback(`WebRTC could not start (${error instanceof Error ? error.message : error})`);
      return;
    }
    if (!this.wanted) {
      this.teardown();
      return;
    }
    if (answer.status === 404 || answer.status === 405 || answer.status === 501) {
      this.teardown();
      this.callbacks.onFallback("this gateway does not offer WebRTC");
      return;
    }
    if (answer.status !== 201) {
      let message = `HTTP ${answer.status}`;
      try {
        const body = await answer.json();
        message = String(body?.error?.message ?? message);
      } catch {
        // not JSON: the status says enough
      }
      this.teardown();
      const refused = answer.status === 401 || answer.status === 403;
      this.wanted = false;
      this.callbacks.onClosed(answer.status === 429 ? 1008 : 1011, message, refused);
      return;
    }
    const location = answer.headers.get("Location") ?? "";
    this.callId = location.split("/").filter(Boolean).pop() ?? null;
    await pc.setRemoteDescription({ type: "answer", sdp: await answer.text() });
    if (this.callId) this.listen(this.callId);
    this.timer = setTimeout(() => {
      if (!this.opened && this.wanted) {
        this.close("no media path");
        this.callbacks.onFallback("the WebRTC media path did not connect");
      }
    }, CONNECT_TIMEOUT_MS);
  }

  /** @param {RTCPeerConnection} pc @returns {Promise<void>} once candidates are in the offer */
  gathered(pc) {
    if (pc.iceGatheringState === "complete") return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        pc.removeEventListener("icegatheringstatechange", check);
        resolve();
      };
      const check = () => {
        if (pc.iceGatheringState === "complete") done();
      };
      pc.addEventListener("icegatheringstatechange", check);
      setTimeout(done, GATHER_TIMEOUT_MS);
    });
  }

  /** @param {string} callId the gateway's messages for this call */
  listen(callId) {
    const feed = new EventSource(gatewayUrl(`api/realtime/calls/${encodeURIComponent(callId)}/events`));
    this.feed = feed;
    feed.onmessage = (message) => {
      let event;
      try {
        event = JSON.parse(message.data);
      } catch {
        return;
      }
      if (event?.type === "realtalk.ended") {
        this.ended = { code: Number(event.code) || 1000, reason: String(event.reason ?? "") };
        feed.close();
        this.lost(this.ended.reason);
        return;
      }
      this.callbacks.onEvent(event);
    };
    feed.onerror = () => {
      // EventSource reconnects by itself; a call that ended is closed above.
    };
  }

  /** @param {string} data one event from the data channel */
  receive(data) {
    let event;
    try {
      event = JSON.parse(data);
    } catch {
      return;
    }
    const type = event?.type;
    // The gateway cannot measure voice-to-voice on a call (the audio does not pass through it):
    // the page takes it from the service's own marks, speech end to the first audio played.
    if (type === "input_audio_buffer.speech_stopped") this.speechStoppedAt = performance.now();
    this.callbacks.onEvent(event);
    if (type === "output_audio_buffer.started" && this.speechStoppedAt !== null) {
      const latency = performance.now() - this.speechStoppedAt;
      this.speechStoppedAt = null;
      this.callbacks.onEvent({ type: "realtalk.latency", response_id: event.response_id, voice_to_voice_ms: latency });
    }
  }

  /** @param {string} why */
  lost(why) {
    if (!this.wanted) return;
    this.wanted = false;
    const ended = this.ended;
    this.teardown();
    this.callbacks.onClosed(ended?.code ?? 1006, ended?.reason ?? why, false);
  }

  /** @param {object} event a client event for the service (the gateway's own ones do not apply here) */
  send(event) {
    const type = /** @type {{type?: unknown}} */ (event).type;
    if (typeof type === "string" && type.startsWith("realtalk.")) return;
    if (this.channel?.readyState === "open") this.channel.send(JSON.stringify(event));
  }

  /** Audio goes over the media track: nothing to send here. */
  sendAudio() {}

  /** The WebSocket's restart hint has no meaning for a call. */
  expectRestart() {}

  /** @param {MediaStream} microphone a reopened microphone (other processing switches) */
  async replaceMicrophone(microphone) {
    const track = microphone.getAudioTracks()[0];
    if (this.sender && track) await this.sender.replaceTrack(track);
  }

  /** @param {string} why */
  close(why) {
    const wanted = this.wanted;
    this.wanted = false;
    const callId = this.callId;
    this.teardown();
    if (callId) {
      // The peer connection's end hangs the call up too; this makes it immediate.
      void fetch(gatewayUrl(`api/realtime/calls/${encodeURIComponent(callId)}`), {
        method: "DELETE",
        credentials: "same-origin",
        keepalive: true,
      }).catch(() => undefined);
    }
    if (wanted) this.callbacks.onClosed(1000, why, false);
  }

  teardown() {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    this.feed?.close();
    this.feed = null;
    if (this.channel) {
      this.channel.onclose = null;
      this.channel.close();
    }
    this.channel = null;
    this.pc?.close();
    this.pc = null;
    this.sender = null;
    this.callId = null;
    this.speaker.srcObject = null;
  }
}
