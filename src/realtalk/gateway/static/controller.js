/**
 * The voice session on the page: server events in, audio actions and view updates out.
 *
 * What this module deliberately does not decide: when and where to truncate an interrupted
 * reply, how to order or cut transcripts, what things cost. The gateway runs the Python
 * protocol core per connection and decides all of that; the page only reports what it alone
 * knows (samples actually played, per item) with the `realtalk.*` extension events, opted into
 * with `?realtalk_ui=1`:
 *
 * - `realtalk.playback {item_id, played_samples}`: running total per item (24 kHz samples),
 *   about every 100 ms while playing, and at once when an item starts and ends;
 * - `realtalk.flushed {item_id, played_samples}`: after the page dropped unplayed audio because
 *   the user started speaking (`input_audio_buffer.speech_started`). The core turns it into
 *   `conversation.item.truncate`; the page never sends a truncate itself.
 *
 * @module controller
 */

import { AudioEngine } from "./audio.js";
import { decodeBase64, encodeBase64 } from "./base64.js";
import { REFUSED_SENTENCE, STOPPED_SENTENCE, describeClose } from "./closing.js";
import { Connection, MAX_RECONNECTS } from "./connection.js";
import { ToolActivity } from "./tools.js";
import { RtcConnection, webrtcAvailable } from "./webrtc.js";

/** Items remembered for stats and for dropping late audio of flushed items (bounded). */
const MAX_ITEMS_TRACKED = 64;
const MAX_LATENCIES_KEPT = 50;
/** How often a running tool's elapsed time is redrawn: about four times a second. */
const TOOL_TICK_MS = 250;

/** The gateway's code for "I am restarting": its 1001 close then means "come back in a moment". */
const RESTART_CODE = "server_shutting_down";

const STATUS_TEXT = {
  checking: "Checking the gateway…",
  idle: "Press Start to talk",
  connecting: "Connecting…",
  listening: "Listening",
  "user-speaking": "You are speaking",
  thinking: "Thinking…",
  "agent-speaking": "Agent speaking",
};

/**
 * Add to an insertion-ordered collection, forgetting the oldest entries beyond the bound.
 * @template K, V
 * @param {Map<K, V>} map
 * @param {K} key
 * @param {V} value
 */
function remember(map, key, value) {
  map.delete(key);
  map.set(key, value);
  while (map.size > MAX_ITEMS_TRACKED) map.delete(/** @type {K} */ (map.keys().next().value));
}

/** @param {number[]} values @returns {number | null} */
function median(values) {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

export class VoiceController {
  /**
   * @param {import("./view.js").View} view
   * @param {() => import("./audio.js").ProcessingOptions} processingOptions read from the form
   */
  constructor(view, processingOptions) {
    this.view = view;
    this.processingOptions = processingOptions;
    this.audio = new AudioEngine({
      onChunk: (pcm, peak) => this.onMicrophoneChunk(pcm, peak),
      onProgress: (itemId, played, playing) => this.onPlaybackProgress(itemId, played, playing),
      onFlushed: (items, flushCount) => this.onPlaybackFlushed(items, flushCount),
      onOverflow: (dropped) => {
        this.droppedPlaybackSamples = dropped;
      },
    });
    const callbacks = {
      onOpen: () => this.render(),
      /** @param {any} event */
      onEvent: (event) => this.onServerEvent(event),
      /** @param {number} attempt @param {number} delayMs @param {string} why */
      onReconnecting: (attempt, delayMs, why) => this.onReconnecting(attempt, delayMs, why),
      /** @param {number} code @param {string} reason @param {boolean} refused */
      onClosed: (code, reason, refused) => this.onClosed(code, reason, refused),
    };
    this.socketConnection = new Connection(callbacks);
    this.rtcConnection = new RtcConnection(
      { ...callbacks, onFallback: (why) => this.onWebrtcFallback(why) },
      /** @type {HTMLAudioElement} */ (document.getElementById("speaker") ?? document.createElement("audio")),
    );
    /**
     * How the audio travels: "webrtc" straight to the service (the gateway watches the call), or
     * "websocket" through the gateway's relay. WebRTC by default where the browser has it.
     * @type {"webrtc" | "websocket"}
     */
    this.transport = webrtcAvailable() ? "webrtc" : "websocket";
    /** @type {"idle" | "connecting" | "open" | "reconnecting" | "closed"} */
    this.link = "idle";
    this.linkText = "";
    this.running = false;
    this.muted = false;
    /** @type {"checking" | "ok" | "token-required" | "unavailable"} the gateway's answer on sign-in */
    this.signIn = "checking";
    /** A sign-in just succeeded: the idle status confirms it until the next Start. */
    this.signInConfirmed = false;
    /** The last close was the user's Stop (nothing to reconnect). */
    this.stoppedByUser = false;
    /** The last close was the gateway refusing the handshake. */
    this.refused = false;
    this.sessionReady = false;
    this.userSpeaking = false;
    this.awaitingReply = false;
    this.agentPlaying = false;
    /** @type {Set<string>} */
    this.activeResponses = new Set();
    /** @type {any} */
    this.session = null;
    /** @type {Map<string, number>} played samples (24 kHz) per item, as reported by the worklet */
    this.playedByItem = new Map();
    /** @type {Map<string, number>} samples (24 kHz) received per item, for comparison */
    this.receivedByItem = new Map();
    /** @type {Map<string, number>} the last `realtalk.playback` total sent per item */
    this.reportedByItem = new Map();
    /** @type {Map<string, true>} items whose audio was pushed to the worklet since the last flush */
    this.pushedItems = new Map();
    /** @type {Map<string, true>} items flushed on barge-in: their late deltas are dropped */
    this.flushedItems = new Map();
    this.flushCount = 0;
    /** @type {{item_id: string, played_samples: number} | null} */
    this.lastTruncateReport = null;
    /** @type {{item_id: string, played_samples: number} | null} */
    this.lastPlaybackReport = null;
    this.droppedDeltas = 0;
    this.droppedPlaybackSamples = 0;
    /** @type {number[]} */
    this.latenciesMs = [];
    /** @type {Record<string, number>} */
    this.eventCounts = {};
    /** @type {{code: number, reason: string} | null} */
    this.closeInfo = null;
    /** The tools the gateway runs for this session (`realtalk.tool`), running and finished. */
    this.tools = new ToolActivity();
    /** @type {ReturnType<typeof setInterval> | null} redraws elapsed times while a tool runs */
    this.toolTicker = null;
    /** Called when the gateway refused the socket (app.js re-checks the sign-in then). */
    this.onRefused = () => {};
  }

  /** @returns {Connection | RtcConnection} the connection of the current transport */
  get connection() {
    return this.transport === "webrtc" ? this.rtcConnection : this.socketConnection;
  }

  /** @param {"webrtc" | "websocket"} transport for the next Start */
  setTransport(transport) {
    if (this.running) return;
    this.transport = transport === "webrtc" && webrtcAvailable() ? "webrtc" : "websocket";
  }

  /** WebRTC could not carry this session: go on over the WebSocket relay, and say so. */
  /** @param {string} why */
  onWebrtcFallback(why) {
    this.transport = "websocket";
    this.view.setTransport(this.transport);
    this.view.showNotice("warning", `Using the WebSocket relay: ${why}.`, "webrtc_fallback");
    if (this.running) this.socketConnection.open();
  }

  /** @returns {string} checking, signed-out, idle, connecting, listening, user-speaking, thinking, agent-speaking, reconnecting or closed */
  get phase() {
    if (!this.running && this.signIn === "token-required") return "signed-out";
    if (this.link === "idle" && this.signIn === "checking") return "checking";
    if (this.link === "idle" || this.link === "closed" || this.link === "reconnecting") return this.link;
    if (this.link === "connecting" || !this.sessionReady) return "connecting";
    if (this.userSpeaking) return "user-speaking";
    if (this.agentPlaying) return "agent-speaking";
    if (this.awaitingReply || this.activeResponses.size > 0) return "thinking";
    return "listening";
  }

  /** @returns {string} */
  get statusText() {
    const phase = this.phase;
    if (phase === "reconnecting" || phase === "closed") return this.linkText;
    if (phase === "signed-out") {
      const why = this.refused ? "Your sign-in has ended. " : "";
      return `${why}Sign in below to start talking.`;
    }
    if (phase === "idle" && this.signInConfirmed) return "Signed in. Press Start to talk.";
    const text = STATUS_TEXT[/** @type {keyof typeof STATUS_TEXT} */ (phase)];
    return this.muted && phase !== "idle" ? `${text} (muted)` : text;
  }

  render() {
    this.view.setStatus(this.phase, this.statusText);
    const signedOut = this.signIn === "token-required";
    this.view.setControls({
      running: this.running,
      muted: this.muted,
      // Before sign-in a Start could only be refused: it waits for the gateway's answer.
      canStart: this.signIn !== "checking" && !signedOut,
      canReconnect:
        !this.running && this.link === "closed" && this.closeInfo !== null && !this.stoppedByUser && !signedOut,
    });
  }

  /** @param {"ok" | "token-required" | "unavailable"} state the gateway's answer on sign-in */
  setSignIn(state) {
    this.signIn = state;
    this.render();
  }

  /** A sign-in succeeded: what went wrong before it is over, and the user is told it worked. */
  confirmSignIn() {
    this.signInConfirmed = true;
    this.refused = false;
    if (!this.running) {
      this.link = "idle";
      this.linkText = "";
    }
    this.view.hideNotice();
    this.render();
  }

  /** Start: microphone first (a refusal costs nothing upstream), then the socket. */
  async start() {
    if (this.running) return;
    this.running = true;
    this.link = "connecting";
    this.closeInfo = null;
    this.stoppedByUser = false;
    this.refused = false;
    this.signInConfirmed = false;
    // Every session starts unmuted: a mute left from the last one would silence this one unseen.
    this.setMuted(false);
    this.view.hideNotice();
    this.render();
    try {
      await this.audio.start(this.processingOptions());
    } catch (error) {
      if (!this.running) return; // stopped meanwhile: the stop already said so
      this.running = false;
      this.link = "closed";
      const name = error instanceof Error ? error.name : "";
      this.linkText =
        name === "NotAllowedError"
          ? "Closed: microphone access was refused"
          : `Closed: the microphone could not be opened (${error instanceof Error ? error.message : error})`;
      this.render();
      return;
    }
    if (!this.running) {
      // Stopped while the browser was asking for the microphone.
      await this.audio.stop();
      return;
    }
    if (this.transport === "webrtc" && this.audio.stream) void this.rtcConnection.open(this.audio.stream);
    else this.socketConnection.open();
  }

  stop() {
    if (!this.running) return;
    this.stoppedByUser = true;
    this.connection.close("stopped by the user");
    this.running = false;
  }

  /** @param {boolean} muted */
  setMuted(muted) {
    this.muted = muted;
    this.audio.setMuted(muted);
    this.render();
  }

  /** Apply changed processing switches (headphones) to the live microphone. */
  async reopenMicrophone() {
    if (!this.running) return;
    try {
      await this.audio.openMicrophone(this.processingOptions());
      if (this.transport === "webrtc" && this.audio.stream) await this.rtcConnection.replaceMicrophone(this.audio.stream);
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      this.view.showNotice("warning", `The microphone could not be reopened: ${message}`, "microphone");
    }
  }

  /** @param {ArrayBuffer} pcm @param {number} peak */
  onMicrophoneChunk(pcm, peak) {
    this.view.setMicLevel(peak);
    // Before the session exists there is nobody to send to; dropping ~100 ms is harmless.
    if (!this.sessionReady) return;
    this.connection.sendAudio(encodeBase64(new Uint8Array(pcm)));
  }

  /** @param {string} itemId @param {number} played @param {boolean} playing */
  onPlaybackProgress(itemId, played, playing) {
    remember(this.playedByItem, itemId, played);
    if (this.agentPlaying !== playing) {
      this.agentPlaying = playing;
      this.render();
    }
    if (this.flushedItems.has(itemId) || this.reportedByItem.get(itemId) === played) return;
    remember(this.reportedByItem, itemId, played);
    this.lastPlaybackReport = { item_id: itemId, played_samples: played };
    this.connection.send({ type: "realtalk.playback", item_id: itemId, played_samples: played });
  }

  /** @param {[string, number][]} items @param {number} flushCount */
  onPlaybackFlushed(items, flushCount) {
    this.flushCount = flushCount;
    this.agentPlaying = false;
    for (const [itemId, played] of items) {
      remember(this.playedByItem, itemId, played);
      this.lastTruncateReport = { item_id: itemId, played_samples: played };
      this.connection.send({ type: "realtalk.flushed", item_id: itemId, played_samples: played });
    }
    this.render();
  }

  /** Barge-in: stop the speaker now; the flush answer carries the counts for the core. */
  flushPlayback() {
    // Late deltas of these items may still be in flight: mark them before the worklet answers.
    for (const itemId of this.pushedItems.keys()) remember(this.flushedItems, itemId, true);
    this.pushedItems.clear();
    this.audio.flush();
  }

  /** @param {any} event */
  onServerEvent(event) {
    const type = typeof event?.type === "string" ? event.type : "";
    this.eventCounts[type] = (this.eventCounts[type] ?? 0) + 1;
    switch (type) {
      case "response.output_audio.delta": {
        const itemId = String(event.item_id);
        if (this.flushedItems.has(itemId)) {
          this.droppedDeltas++;
          return;
        }
        const bytes = decodeBase64(event.delta);
        remember(this.pushedItems, itemId, true);
        remember(this.receivedByItem, itemId, (this.receivedByItem.get(itemId) ?? 0) + (bytes.byteLength >> 1));
        this.audio.play(itemId, bytes);
        return;
      }
      case "session.created":
        this.sessionReady = true;
        this.link = "open";
        break;
      case "realtalk.session":
        this.session = event;
        this.view.setSession(event);
        break;
      case "input_audio_buffer.speech_started":
        this.userSpeaking = true;
        this.awaitingReply = false;
        this.flushPlayback();
        break;
      case "input_audio_buffer.speech_stopped":
        this.userSpeaking = false;
        this.awaitingReply = true;
        break;
      case "response.created":
        this.awaitingReply = false;
        if (event.response?.id) this.activeResponses.add(event.response.id);
        break;
      case "response.done":
        this.awaitingReply = false;
        this.activeResponses.delete(event.response?.id);
        break;
      // Over WebRTC the service plays the reply and says when (there are no audio deltas).
      case "output_audio_buffer.started":
        this.agentPlaying = true;
        break;
      case "output_audio_buffer.stopped":
      case "output_audio_buffer.cleared":
        this.agentPlaying = false;
        break;
      case "realtalk.transcript":
        if (Array.isArray(event.lines)) this.view.setTranscript(event.lines);
        return;
      case "realtalk.cost":
        this.view.setCost(event);
        return;
      case "realtalk.tool": {
        const ended = this.tools.receive(event, performance.now());
        if (ended) this.view.addToolCall(ended);
        this.renderTools();
        return;
      }
      case "realtalk.latency":
        this.onLatency(Number(event.voice_to_voice_ms));
        return;
      case "realtalk.notice":
        if (event.code === RESTART_CODE) this.connection.expectRestart();
        this.view.showNotice(event.level ?? "warning", String(event.message ?? ""), String(event.code ?? ""));
        return;
      case "error":
        if (event.error?.code === RESTART_CODE) this.connection.expectRestart();
        this.view.showNotice("error", String(event.error?.message ?? "server error"), String(event.error?.code ?? ""));
        return;
      default:
        return;
    }
    this.render();
  }

  /** @param {number} latencyMs */
  onLatency(latencyMs) {
    if (!Number.isFinite(latencyMs)) return;
    this.latenciesMs.push(latencyMs);
    if (this.latenciesMs.length > MAX_LATENCIES_KEPT) this.latenciesMs.shift();
    this.view.setLatency(latencyMs, median(this.latenciesMs), this.latenciesMs.length);
  }

  /** A new socket is a new upstream session: forget this one's live state. */
  resetSessionState() {
    this.sessionReady = false;
    this.userSpeaking = false;
    this.awaitingReply = false;
    this.agentPlaying = false;
    this.activeResponses.clear();
    this.flushPlayback();
    for (const ended of this.tools.endSession()) this.view.addToolCall(ended);
    this.renderTools();
  }

  /** @returns {{running: import("./tools.js").RunningCall[], finished: import("./tools.js").FinishedCall[]}} copies */
  get toolCalls() {
    return {
      running: this.tools.running(performance.now()),
      finished: this.tools.finished.map((call) => ({ ...call })),
    };
  }

  /** Show the running tools, and keep their elapsed times counting only while any runs. */
  renderTools() {
    this.view.setRunningTools(this.tools.running(performance.now()));
    if (this.tools.anyRunning && this.toolTicker === null) {
      this.toolTicker = setInterval(() => this.view.setRunningTools(this.tools.running(performance.now())), TOOL_TICK_MS);
    } else if (!this.tools.anyRunning && this.toolTicker !== null) {
      clearInterval(this.toolTicker);
      this.toolTicker = null;
    }
  }

  /** @param {number} attempt @param {number} delayMs @param {string} why */
  onReconnecting(attempt, delayMs, why) {
    this.resetSessionState();
    this.view.hideNotice(); // the notices of the session that ended; the status says what happens now
    this.link = "reconnecting";
    this.linkText = `Reconnecting in ${(delayMs / 1000).toFixed(1)} s (attempt ${attempt} of ${MAX_RECONNECTS}). ${why}`;
    this.render();
  }

  /** @param {number} code @param {string} reason @param {boolean} refused */
  onClosed(code, reason, refused) {
    this.resetSessionState();
    // A notice of the session that ended ("finishing the current reply") would now contradict the
    // page: the status line says why it closed, and the Reconnect button what can be done.
    this.view.hideNotice();
    this.closeInfo = { code, reason };
    this.refused = refused;
    this.link = "closed";
    if (this.stoppedByUser) this.linkText = STOPPED_SENTENCE;
    else this.linkText = `Closed: ${refused ? REFUSED_SENTENCE : describeClose(code, reason)}`;
    this.running = false;
    this.view.setMicLevel(0);
    void this.audio.stop();
    this.render();
    if (refused) this.onRefused();
  }
}
