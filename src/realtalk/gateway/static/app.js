/**
 * Entry point: wires the page's controls to the controller, handles sign-in, and exposes
 * read-only statistics on `window.realtalk` for end-to-end tests and for curious users.
 *
 * Nothing connects on page load: an upstream session is opened (and billed) only after the
 * user presses Start. Start waits for the gateway's answer on sign-in: where a sign-in is
 * needed, the page asks for it first instead of offering a Start that can only be refused.
 * Once the user may talk, a line shows what they spent today (`usage.js`).
 *
 * @module app
 */

import { missingAudioSupport } from "./audio.js";
import { checkSession, signIn } from "./auth.js";
import { VoiceController } from "./controller.js";
import { UsageMonitor } from "./usage.js";
import { View } from "./view.js";

/** @param {string} id @returns {HTMLInputElement} */
function input(id) {
  return /** @type {HTMLInputElement} */ (document.getElementById(id));
}

const view = new View();
const controller = new VoiceController(view, () => ({
  echoCancellation: !input("headphones").checked,
  noiseSuppression: input("noise-suppression").checked,
  autoGainControl: input("auto-gain").checked,
}));
const usage = new UsageMonitor((answer) => view.setUsage(answer));
/** The phases of a session that is connecting or open: leaving them means it ended. */
const SESSION_PHASES = new Set(["connecting", "listening", "user-speaking", "thinking", "agent-speaking"]);
view.onPhaseChange = (phase) => usage.setInSession(SESSION_PHASES.has(phase));

/** Test hooks: getters over live state, each returning a copy; nothing here can change it. */
const hooks = Object.freeze({
  get status() {
    return controller.phase;
  },
  get statusText() {
    return controller.statusText;
  },
  /** @returns {"webrtc" | "websocket"} how this page's audio travels */
  get transport() {
    return controller.transport;
  },
  /** @returns {string | null} the WebRTC call's id (null over the WebSocket) */
  get callId() {
    return controller.rtcConnection.callId;
  },
  get chunksSent() {
    return controller.connection.chunksSent;
  },
  get chunksDropped() {
    return controller.connection.chunksDropped;
  },
  /** @returns {Record<string, number>} samples (24 kHz) played per item id */
  get playedSamples() {
    return Object.fromEntries(controller.playedByItem);
  },
  /** @returns {Record<string, number>} samples (24 kHz) received per item id (flushed ones excluded) */
  get receivedSamples() {
    return Object.fromEntries(controller.receivedByItem);
  },
  get flushCount() {
    return controller.flushCount;
  },
  /** @returns {{item_id: string, played_samples: number} | null} the last `realtalk.flushed` sent */
  get lastTruncateReport() {
    return controller.lastTruncateReport && { ...controller.lastTruncateReport };
  },
  get lastPlaybackReport() {
    return controller.lastPlaybackReport && { ...controller.lastPlaybackReport };
  },
  get droppedDeltas() {
    return controller.droppedDeltas;
  },
  get droppedPlaybackSamples() {
    return controller.droppedPlaybackSamples;
  },
  get sampleRate() {
    return controller.audio.sampleRate;
  },
  /** @returns {boolean | null} whether the microphone track is disabled (null: no microphone) */
  get microphoneMuted() {
    return controller.audio.microphoneMuted;
  },
  get microphoneSettings() {
    const settings = controller.audio.microphoneSettings();
    return settings && { ...settings };
  },
  get session() {
    return controller.session && { ...controller.session };
  },
  get latenciesMs() {
    return [...controller.latenciesMs];
  },
  get eventCounts() {
    return { ...controller.eventCounts };
  },
  get closeInfo() {
    return controller.closeInfo && { ...controller.closeInfo };
  },
  /**
   * @returns {{running: {call_id: string, name: string, elapsed_ms: number}[],
   *   finished: {call_id: string, name: string, status: string, duration_ms: number | null, cost_usd: string | null}[]}}
   *   the tools the gateway ran for this page: running ones with the time since they started,
   *   finished ones with how they ended (oldest first)
   */
  get tools() {
    return controller.toolCalls;
  },
  /**
   * @returns {{state: string, usage?: Record<string, unknown>} | null} the last answer of
   *   `GET api/usage` (null before the first): today's spend, sessions and budgets, as the gateway said
   */
  get usage() {
    return usage.last && JSON.parse(JSON.stringify(usage.last));
  },
});
Object.defineProperty(window, "realtalk", { value: hooks, writable: false, configurable: false });

/** @returns {Promise<void>} once the page shows what the gateway says about sign-in */
async function refreshAuth() {
  const { state, info } = await checkSession();
  view.showAuth(state === "token-required");
  view.setSignedIn(info.subject, state === "ok" && info.auth_required === true);
  controller.setSignIn(state);
  usage.setEnabled(state === "ok");
  if (state === "unavailable") view.showNotice("error", "The gateway cannot be reached.", "unreachable");
  // If the gateway says where sessions go, show it before Start (realtalk.session confirms later).
  if (typeof info.upstream === "string" && !controller.session) view.setUpstream(info.upstream, info.deployment);
}

function wire() {
  const unsupported = missingAudioSupport();
  if (unsupported) {
    view.showNotice("error", `Voice is not available: ${unsupported}.`, "unsupported");
    view.setControls({ running: false, muted: false, canStart: false });
    view.setStatus("unsupported", "Voice is not available in this browser.");
    return;
  }
  document.getElementById("start")?.addEventListener("click", () => void controller.start());
  document.getElementById("reconnect")?.addEventListener("click", () => void controller.start());
  document.getElementById("stop")?.addEventListener("click", () => controller.stop());
  document.getElementById("mute")?.addEventListener("click", () => controller.setMuted(!controller.muted));
  // `?transport=websocket` (or `webrtc`) picks the transport of a bookmarked page.
  const requested = new URLSearchParams(location.search).get("transport");
  if (requested === "websocket" || requested === "webrtc") controller.setTransport(requested);
  const transport = /** @type {HTMLSelectElement | null} */ (document.getElementById("transport"));
  if (transport) {
    transport.value = controller.transport;
    transport.addEventListener("change", () => {
      controller.setTransport(transport.value === "webrtc" ? "webrtc" : "websocket");
      transport.value = controller.transport;
    });
  }
  for (const id of ["headphones", "noise-suppression", "auto-gain"]) {
    input(id).addEventListener("change", () => void controller.reopenMicrophone());
  }
  document.getElementById("notice-close")?.addEventListener("click", () => view.hideNotice());
  document.getElementById("token-form")?.addEventListener("submit", async (event) => {
    event.preventDefault();
    const field = input("token");
    const token = field.value.trim();
    field.value = ""; // the token lives on in the HttpOnly cookie only
    if (!token) return;
    const result = await signIn(token);
    if (result.ok) {
      await refreshAuth();
      if (controller.signIn === "ok") controller.confirmSignIn();
    } else {
      view.showAuth(true, result.message);
    }
  });
  controller.onRefused = () => void refreshAuth();
  controller.render();
  void refreshAuth();
}

wire();
