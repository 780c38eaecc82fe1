/**
 * Rendering: plain data in, DOM out. No decisions about the conversation are made here.
 *
 * Text always goes through `textContent` (transcripts are model and user output: never HTML).
 * Transcript lines are keyed by item id and updated in place, so a screen reader following the
 * `role="log"` region hears new lines rather than the whole transcript again.
 *
 * @module view
 */

import { SESSION_ENDED } from "./tools.js";
import { describeUsage } from "./usage.js";

/** @param {string} id @returns {HTMLElement} */
function byId(id) {
  const element = document.getElementById(id);
  if (!element) throw new Error(`the page has no #${id}`);
  return element;
}

const ROLE_LABELS = new Map([
  ["user", "You"],
  ["assistant", "Agent"],
]);

/** @param {unknown} value @param {number} digits @returns {string} */
function usd(value, digits = 4) {
  const number = Number(value);
  return Number.isFinite(number) ? `$${number.toFixed(digits)}` : "–";
}

/**
 * Costs are the gateway's estimate from token counts at list prices, not an invoice: say so.
 * @param {unknown} value @param {string} [suffix] @returns {string}
 */
function estimate(value, suffix = "") {
  const amount = usd(value);
  return amount === "–" ? amount : `≈ ${amount}${suffix}`;
}

/** How a tool call ended, in words (the gateway's `realtalk.tool` statuses, and the page's own). */
const TOOL_OUTCOMES = new Map([
  ["ok", "done"],
  ["error", "failed"],
  ["timeout", "timed out"],
  ["invalid_arguments", "refused: invalid arguments"],
  ["unknown_tool", "refused: no such tool"],
  ["cancelled", "cancelled"],
  [SESSION_ENDED, "stopped: the session ended"],
]);
const MAX_TOOL_LINES = 50;

/** @param {number} ms @returns {string} "320 ms" under a second, "1.5 s" above */
function formatDuration(ms) {
  return ms < 999.5 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`;
}

/** @param {string} status @returns {string} */
function toolOutcome(status) {
  return TOOL_OUTCOMES.get(status) ?? status.replaceAll("_", " ");
}

/**
 * What a tool call cost on its own, which may be far below a cent (a short delegated question);
 * nothing for a call that cost nothing (a local function: the gateway may still say "0.000000").
 * @param {string | null} value @returns {string}
 */
function toolCost(value) {
  const number = Number(value);
  if (value === null || !Number.isFinite(number) || number <= 0) return "";
  return number < 0.00005 ? "< $0.0001" : estimate(number);
}

/**
 * @typedef {object} TranscriptLine
 * @property {string} item_id
 * @property {string} role
 * @property {string} text
 * @property {boolean} final
 * @property {boolean} cut
 */

export class View {
  constructor() {
    this.status = byId("status");
    this.transcript = byId("transcript");
    this.notice = byId("notice");
    this.badge = byId("emulator-badge");
    this.deployment = byId("deployment");
    this.micLevel = /** @type {HTMLMeterElement} */ (byId("mic-level"));
    /** @type {Map<string, HTMLLIElement>} */
    this.lines = new Map();
    this.toolsRunning = byId("tools-running");
    this.toolLog = byId("tool-log");
    /** @type {Map<string, HTMLLIElement>} */
    this.runningTools = new Map();
    this.usage = byId("usage");
    /** Called with the new phase whenever the status changes phase (app.js follows sessions). */
    this.onPhaseChange = (/** @type {string} */ _phase) => {};
  }

  /**
   * The tools running now, with their elapsed time, keyed by call id and updated in place: the
   * region announces a call once when it starts (additions), never its ticking seconds (a timer).
   * @param {import("./tools.js").RunningCall[]} calls
   */
  setRunningTools(calls) {
    const seen = new Set();
    for (const call of calls) {
      seen.add(call.call_id);
      let li = this.runningTools.get(call.call_id);
      if (!li) {
        li = document.createElement("li");
        li.className = "tool-running";
        li.dataset.callId = call.call_id;
        const name = document.createElement("span");
        name.className = "tool-name";
        name.textContent = call.name;
        const state = document.createElement("span");
        state.className = "tool-state";
        state.textContent = "running";
        const elapsed = document.createElement("span");
        elapsed.className = "tool-elapsed";
        elapsed.setAttribute("role", "timer");
        elapsed.setAttribute("aria-live", "off");
        li.append(name, " ", state, " ", elapsed);
        this.runningTools.set(call.call_id, li);
        this.toolsRunning.append(li);
      }
      const elapsed = /** @type {HTMLElement} */ (li.querySelector(".tool-elapsed"));
      const text = `${(call.elapsed_ms / 1000).toFixed(1)} s`;
      if (elapsed.textContent !== text) elapsed.textContent = text;
    }
    for (const [callId, li] of this.runningTools) {
      if (!seen.has(callId)) {
        li.remove();
        this.runningTools.delete(callId);
      }
    }
  }

  /**
   * A line in the tool log for a call that ended: its name, how it ended, how long it took and
   * what it cost on its own (when it cost anything). Never its arguments or output (the gateway
   * does not send them).
   * @param {import("./tools.js").FinishedCall} call
   */
  addToolCall(call) {
    const li = document.createElement("li");
    li.className = "tool-call";
    li.dataset.callId = call.call_id;
    li.dataset.status = call.status;
    const kind = document.createElement("span");
    kind.className = "tool-kind";
    kind.textContent = "Tool";
    const name = document.createElement("span");
    name.className = "tool-name";
    name.textContent = call.name;
    const outcome = document.createElement("span");
    outcome.className = "tool-outcome";
    outcome.textContent = toolOutcome(call.status);
    li.append(kind, " ", name, " ", outcome);
    const details = [];
    if (call.duration_ms !== null) details.push(formatDuration(call.duration_ms));
    const cost = toolCost(call.cost_usd);
    if (cost) details.push(cost);
    if (details.length > 0) {
      const detail = document.createElement("span");
      detail.className = "tool-detail";
      detail.textContent = `(${details.join(", ")})`;
      li.append(" ", detail);
    }
    this.toolLog.append(li);
    while (this.toolLog.children.length > MAX_TOOL_LINES) this.toolLog.firstElementChild?.remove();
    this.toolLog.scrollTop = this.toolLog.scrollHeight;
  }

  /** @param {string} phase @param {string} text */
  setStatus(phase, text) {
    if (this.status.textContent !== text) this.status.textContent = text;
    if (this.status.dataset.phase === phase) return;
    this.status.dataset.phase = phase;
    this.onPhaseChange(phase);
  }

  /**
   * Today's usage line. It is a polite live region: it is written only when the words change, so
   * a refresh that finds nothing new says nothing. A failed refresh keeps the figures shown.
   * @param {import("./usage.js").UsageAnswer} answer
   */
  setUsage(answer) {
    const line = this.usage;
    if (answer.state === "signed-out") {
      line.hidden = true;
      return;
    }
    let text = "";
    if (answer.state === "unavailable") {
      if (!line.hidden && line.dataset.state !== "unavailable") return;
      text = "Today's usage cannot be read right now.";
      line.title = "";
    } else {
      text = describeUsage(answer.usage);
      const hours = (answer.usage.resets_in_s / 3600).toFixed(1);
      line.title = answer.usage.ledger ? `Daily figures reset at midnight UTC, in ${hours} hours.` : "";
    }
    line.dataset.state = answer.state === "ok" ? (answer.usage.ledger ? "ok" : "off") : answer.state;
    if (line.textContent !== text) line.textContent = text;
    line.hidden = false;
  }

  /** @param {{upstream?: string, deployment?: string, budget_usd?: number | string | null}} session */
  setSession(session) {
    this.setUpstream(session.upstream, session.deployment);
    byId("budget").textContent = session.budget_usd == null ? "none" : usd(session.budget_usd, 2);
  }

  /** @param {unknown} upstream "emulator" | "azure" | "openai" @param {unknown} deployment */
  setUpstream(upstream, deployment) {
    this.badge.hidden = upstream !== "emulator";
    this.deployment.textContent = typeof deployment === "string" && deployment ? `${deployment} via ${upstream}` : "";
  }

  /**
   * Show the lines exactly as given: the core already ordered them and cut interrupted replies.
   * @param {TranscriptLine[]} lines
   */
  setTranscript(lines) {
    const seen = new Set();
    /** @type {ChildNode | null} */
    let previous = null;
    for (const line of lines) {
      seen.add(line.item_id);
      let li = this.lines.get(line.item_id);
      if (!li) {
        li = document.createElement("li");
        const role = document.createElement("span");
        role.className = "role";
        const text = document.createElement("span");
        text.className = "text";
        const mark = document.createElement("span");
        mark.className = "cut-mark";
        mark.textContent = "interrupted";
        li.append(role, text, mark);
        this.lines.set(line.item_id, li);
      }
      li.className = `line ${line.role === "user" ? "user" : "assistant"}`;
      li.classList.toggle("partial", !line.final);
      li.classList.toggle("cut", Boolean(line.cut));
      li.dataset.itemId = line.item_id;
      /** @type {HTMLElement} */ (li.children[0]).textContent = ROLE_LABELS.get(line.role) ?? line.role;
      const text = /** @type {HTMLElement} */ (li.children[1]);
      if (text.textContent !== line.text) text.textContent = line.text;
      // Keep DOM order equal to the given order, moving only what is out of place.
      /** @type {ChildNode | null} */
      const expectedNext = previous ? previous.nextSibling : this.transcript.firstChild;
      if (expectedNext !== li) this.transcript.insertBefore(li, expectedNext);
      previous = li;
    }
    for (const [itemId, li] of this.lines) {
      if (!seen.has(itemId)) {
        li.remove();
        this.lines.delete(itemId);
      }
    }
    this.transcript.scrollTop = this.transcript.scrollHeight;
  }

  clearTranscript() {
    this.setTranscript([]);
  }

  /**
   * @param {{total_usd?: number, turn_usd?: number, cache_hit_ratio?: number,
   *   unheard_usd?: number, tokens?: unknown}} cost
   */
  setCost(cost) {
    byId("cost-total").textContent = estimate(cost.total_usd, " at list prices");
    byId("cost-turn").textContent = estimate(cost.turn_usd);
    const ratio = Number(cost.cache_hit_ratio);
    byId("cache-hit").textContent = Number.isFinite(ratio) ? `${Math.round(ratio * 100)} %` : "–";
    byId("cost-unheard").textContent = estimate(cost.unheard_usd);
    byId("tokens").textContent = formatTokens(cost.tokens);
  }

  /** @param {number} lastMs @param {number | null} medianMs @param {number} count */
  setLatency(lastMs, medianMs, count) {
    byId("latency-last").textContent = `${Math.round(lastMs)} ms`;
    byId("latency-median").textContent = medianMs === null ? "–" : `${Math.round(medianMs)} ms (${count} turns)`;
  }

  /** @param {"info" | "warning" | "error"} level @param {string} message @param {string} [code] */
  showNotice(level, message, code = "") {
    this.notice.hidden = false;
    this.notice.dataset.level = level;
    this.notice.dataset.code = code;
    byId("notice-text").textContent = message;
  }

  hideNotice() {
    this.notice.hidden = true;
  }

  /** @param {number} peak 0..1 */
  setMicLevel(peak) {
    this.micLevel.value = peak;
  }

  /**
   * @param {{running: boolean, muted: boolean, canStart: boolean, canReconnect?: boolean}} state
   */
  setControls(state) {
    byId("reconnect").hidden = !state.canReconnect;
    /** @type {HTMLButtonElement} */ (byId("start")).disabled = state.running || !state.canStart;
    /** @type {HTMLButtonElement} */ (byId("stop")).disabled = !state.running;
    const mute = /** @type {HTMLButtonElement} */ (byId("mute"));
    mute.disabled = !state.running;
    mute.setAttribute("aria-pressed", String(state.muted));
    mute.textContent = state.muted ? "Unmute" : "Mute";
    // The transport is chosen before Start; a session keeps the one it started with.
    const transport = /** @type {HTMLSelectElement | null} */ (document.getElementById("transport"));
    if (transport) transport.disabled = state.running;
  }

  /** @param {"webrtc" | "websocket"} transport what the selector shows */
  setTransport(transport) {
    const select = /** @type {HTMLSelectElement | null} */ (document.getElementById("transport"));
    if (select) select.value = transport;
  }

  /**
   * Who is signed in, in the header; nothing when the gateway needs no sign-in.
   * @param {unknown} subject the gateway's name for the user (`token:<hash>` for a static token)
   * @param {boolean} signedIn
   */
  setSignedIn(subject, signedIn) {
    const element = byId("signed-in");
    element.hidden = !signedIn;
    const named = typeof subject === "string" && subject !== "" && !subject.startsWith("token:");
    element.textContent = named ? `Signed in as ${subject}` : "Signed in";
  }

  /** @param {boolean} visible @param {string} [error] */
  showAuth(visible, error = "") {
    byId("auth").hidden = !visible;
    byId("auth-error").textContent = error;
  }
}

/**
 * Session token totals, as the core counts them (`Usage`: `text_in`, `audio_in`, `image_in`,
 * their `cached_*` subsets, `text_out`, `audio_out`), shown as input (cached) and output.
 * @param {unknown} tokens
 * @returns {string}
 */
export function formatTokens(tokens) {
  if (typeof tokens === "number") return tokens.toLocaleString("en");
  if (!tokens || typeof tokens !== "object") return "–";
  /** @type {Record<string, unknown>} */
  const counts = /** @type {any} */ (tokens);
  /** @param {string[]} names */
  const sum = (names) => names.reduce((total, name) => total + (Number(counts[name]) || 0), 0);
  const input = sum(["text_in", "audio_in", "image_in"]);
  const cached = sum(["cached_text_in", "cached_audio_in", "cached_image_in"]);
  const output = sum(["text_out", "audio_out"]);
  const n = (/** @type {number} */ value) => value.toLocaleString("en");
  return `in ${n(input)} (cached ${n(cached)}) · out ${n(output)}`;
}
