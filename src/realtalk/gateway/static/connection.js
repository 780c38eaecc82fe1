/**
 * The page's WebSocket to the gateway: URL, send paths, close reasons and the reconnect policy.
 *
 * Auth: the socket is same-origin, so the browser attaches the gateway's HttpOnly session cookie
 * by itself. No key or token is ever put in the URL or readable by this code.
 *
 * Reconnect policy: only after a close that says "try again" (1006 abnormal, 1012 service
 * restart, 1013 try again later, and 1001 when the gateway said first that it is restarting), at
 * most {@link MAX_RECONNECTS} times with growing delays. A close the gateway chose (budget
 * exceeded, policy, session over, idle) is final and shown with its reason; reconnecting then
 * would open a new paid upstream session nobody asked for (the page offers a Reconnect button).
 *
 * @module connection
 */

import { describeClose } from "./closing.js";

export { describeClose };

export const MAX_RECONNECTS = 3;
const RETRYABLE_CLOSE_CODES = new Set([1006, 1012, 1013]);

/** Bytes waiting in the socket above which microphone chunks are dropped instead of queued. */
const MAX_BUFFERED_BYTES = 512 * 1024;

/** @returns {string} the gateway's Realtime endpoint, relative to the page (works under a path prefix) */
export function realtimeUrl() {
  const url = new URL("openai/v1/realtime", document.baseURI);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  url.searchParams.set("realtalk_ui", "1");
  return url.href;
}

/**
 * @typedef {object} ConnectionCallbacks
 * @property {() => void} onOpen
 * @property {(event: any) => void} onEvent a parsed server event
 * @property {(attempt: number, delayMs: number, why: string) => void} onReconnecting
 * @property {(code: number, reason: string, refused: boolean) => void} onClosed final close;
 *   `refused` when the very first handshake failed
 */

export class Connection {
  /** @param {ConnectionCallbacks} callbacks */
  constructor(callbacks) {
    this.callbacks = callbacks;
    /** @type {WebSocket | null} */
    this.socket = null;
    this.attempt = 0;
    this.wanted = false;
    /** @type {ReturnType<typeof setTimeout> | null} */
    this.retryTimer = null;
    this.chunksSent = 0;
    this.chunksDropped = 0;
    /** The gateway said this socket's session ends because it restarts: its 1001 means "come back". */
    this.restartAnnounced = false;
  }

  /** The gateway announced a restart (drain): a 1001 on this socket is worth a reconnect. */
  expectRestart() {
    this.restartAnnounced = true;
  }

  /** @param {number} code @returns {boolean} */
  retryable(code) {
    return RETRYABLE_CLOSE_CODES.has(code) || (code === 1001 && this.restartAnnounced);
  }

  get isOpen() {
    return this.socket !== null && this.socket.readyState === WebSocket.OPEN;
  }

  open() {
    this.wanted = true;
    this.attempt = 0;
    this.connect();
  }

  connect() {
    const socket = new WebSocket(realtimeUrl());
    this.socket = socket;
    this.restartAnnounced = false;
    let opened = false;
    socket.onopen = () => {
      opened = true;
      this.attempt = 0;
      this.callbacks.onOpen();
    };
    socket.onmessage = (message) => {
      if (typeof message.data !== "string") return; // the protocol is JSON text frames only
      let event;
      try {
        event = JSON.parse(message.data);
      } catch {
        return;
      }
      this.callbacks.onEvent(event);
    };
    socket.onclose = (close) => {
      if (this.socket !== socket) return;
      this.socket = null;
      // A first connection that never opened was refused at the handshake (browsers hide the
      // HTTP status: expired sign-in, wrong origin, too many sessions); retrying would not help.
      const refused = !opened && this.attempt === 0;
      if (refused) {
        this.wanted = false;
        this.callbacks.onClosed(close.code, close.reason, true);
        return;
      }
      if (this.wanted && this.retryable(close.code) && this.attempt < MAX_RECONNECTS) {
        this.attempt++;
        const delayMs = 500 * 2 ** (this.attempt - 1);
        this.callbacks.onReconnecting(this.attempt, delayMs, describeClose(close.code, close.reason));
        this.retryTimer = setTimeout(() => {
          this.retryTimer = null;
          if (this.wanted) this.connect();
        }, delayMs);
        return;
      }
      this.wanted = false;
      this.callbacks.onClosed(close.code, close.reason, false);
    };
  }

  /**
   * Send a microphone chunk in exactly the shape the gateway fast-paths (type first, no extra
   * fields), built as a string: base64 needs no JSON escaping.
   * @param {string} audioBase64
   * @returns {boolean} whether it was sent
   */
  sendAudio(audioBase64) {
    const socket = this.socket;
    if (!socket || socket.readyState !== WebSocket.OPEN || socket.bufferedAmount > MAX_BUFFERED_BYTES) {
      this.chunksDropped++;
      return false;
    }
    socket.send('{"type":"input_audio_buffer.append","audio":"' + audioBase64 + '"}');
    this.chunksSent++;
    return true;
  }

  /** @param {object} event a client event */
  send(event) {
    if (this.isOpen) /** @type {WebSocket} */ (this.socket).send(JSON.stringify(event));
  }

  /** @param {string} reason */
  close(reason) {
    this.wanted = false;
    if (this.retryTimer !== null) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    const socket = this.socket;
    this.socket = null;
    if (socket && socket.readyState <= WebSocket.OPEN) socket.close(1000, reason);
    this.callbacks.onClosed(1000, reason, false);
  }
}
