/**
 * The tools the gateway runs for this page's session, as the `realtalk.tool` events tell them.
 *
 * The gateway runs the profile's tools itself and tells a UI client only that a call started
 * (`status: "running"`) and how it ended (`ok`, `error`, `timeout`, `invalid_arguments`,
 * `unknown_tool`, `cancelled`), with its name, `duration_ms` and `cost_usd` (a string of dollars,
 * or null). Arguments and outputs never reach the page: there is nothing of them to keep here.
 *
 * This module only keeps that state; time is an argument (`performance.now()` in the page), so
 * the elapsed time shown while a call runs is the page's own count from the "running" event.
 *
 * @module tools
 */

/** Calls remembered at once: running ones (a response calls a few) and finished ones for the log. */
const MAX_RUNNING = 64;
const MAX_FINISHED = 50;

/** The page's status for calls still running when their session ended (the gateway cancels them). */
export const SESSION_ENDED = "session_ended";

/**
 * @typedef {object} RunningCall
 * @property {string} call_id
 * @property {string} name
 * @property {number} elapsed_ms since the page heard it start
 */

/**
 * @typedef {object} FinishedCall
 * @property {string} call_id
 * @property {string} name
 * @property {string} status the gateway's (`ok`, `error`, `timeout`, ...) or {@link SESSION_ENDED}
 * @property {number | null} duration_ms the gateway's measure of the call
 * @property {string | null} cost_usd what the call cost on its own (a delegated question)
 */

/** @param {unknown} value @returns {number | null} */
function milliseconds(value) {
  if (value === null || value === undefined || value === "") return null;
  const number = Number(value);
  return Number.isFinite(number) && number >= 0 ? number : null;
}

export class ToolActivity {
  constructor() {
    /** @type {Map<string, {name: string, startedMs: number}>} by call id, in start order */
    this.runningCalls = new Map();
    /** @type {FinishedCall[]} oldest first */
    this.finished = [];
  }

  get anyRunning() {
    return this.runningCalls.size > 0;
  }

  /**
   * Take a `realtalk.tool` event.
   * @param {any} event
   * @param {number} nowMs the page's clock
   * @returns {FinishedCall | null} the call that ended with it, if it was an end
   */
  receive(event, nowMs) {
    const callId = String(event?.call_id ?? "");
    const name = typeof event?.name === "string" && event.name ? event.name : "a tool";
    const status = typeof event?.status === "string" && event.status ? event.status : "error";
    if (status === "running") {
      this.runningCalls.delete(callId);
      this.runningCalls.set(callId, { name, startedMs: nowMs });
      while (this.runningCalls.size > MAX_RUNNING) {
        this.runningCalls.delete(/** @type {string} */ (this.runningCalls.keys().next().value));
      }
      return null;
    }
    this.runningCalls.delete(callId);
    return this.finish({
      call_id: callId,
      name,
      status,
      duration_ms: milliseconds(event?.duration_ms),
      cost_usd: typeof event?.cost_usd === "string" ? event.cost_usd : null,
    });
  }

  /**
   * The session ended (closed, or reconnecting to a new one): its calls still running end with it,
   * and no event will say so, since the gateway cancels them with the session.
   * @returns {FinishedCall[]}
   */
  endSession() {
    const ended = [...this.runningCalls].map(([callId, call]) =>
      this.finish({ call_id: callId, name: call.name, status: SESSION_ENDED, duration_ms: null, cost_usd: null }),
    );
    this.runningCalls.clear();
    return ended;
  }

  /** @param {number} nowMs @returns {RunningCall[]} in start order */
  running(nowMs) {
    return [...this.runningCalls].map(([callId, call]) => ({
      call_id: callId,
      name: call.name,
      elapsed_ms: Math.max(0, Math.round(nowMs - call.startedMs)),
    }));
  }

  /** @param {FinishedCall} call @returns {FinishedCall} */
  finish(call) {
    this.finished.push(call);
    if (this.finished.length > MAX_FINISHED) this.finished.shift();
    return call;
  }
}
