/**
 * The page's audio graph: microphone -> capture worklet, playback worklet -> speakers.
 *
 * Why the context keeps its own rate: Firefox cannot connect a microphone to a context running at
 * another rate, and a 24 kHz context in Chromium resamples with a lower-quality path anyway; the
 * capture worklet converts to 24 kHz itself (lessons.md, mistake 11).
 *
 * Why the three processing constraints are always given explicitly: browsers differ in what an
 * omitted one means, and in Chromium `echoCancellation: true` alone also turns automatic gain
 * control on. With headphones there is no echo to cancel, and cancellation only costs quality,
 * so the "headphones" switch turns it off.
 *
 * @module audio
 */

/**
 * @typedef {object} ProcessingOptions
 * @property {boolean} echoCancellation
 * @property {boolean} noiseSuppression
 * @property {boolean} autoGainControl
 */

/**
 * @typedef {object} AudioCallbacks
 * @property {(pcm: ArrayBuffer, peak: number) => void} onChunk 24 kHz PCM16 from the microphone
 * @property {(itemId: string, played: number, playing: boolean) => void} onProgress samples played
 * @property {(items: [string, number][], flushCount: number) => void} onFlushed final counts
 * @property {(droppedSamples: number) => void} onOverflow the playback ring was full
 */

/** @returns {string | null} why this browser cannot run the voice UI, or null if it can */
export function missingAudioSupport() {
  if (!window.isSecureContext) return "the page must be served over HTTPS (or from localhost)";
  if (!navigator.mediaDevices?.getUserMedia) return "this browser cannot capture the microphone";
  if (typeof AudioContext === "undefined") return "this browser has no Web Audio API";
  if (typeof AudioWorkletNode === "undefined") return "this browser has no AudioWorklet";
  return null;
}

/**
 * @param {ProcessingOptions} processing
 * @returns {MediaStreamConstraints}
 */
export function microphoneConstraints(processing) {
  return {
    audio: {
      echoCancellation: processing.echoCancellation,
      noiseSuppression: processing.noiseSuppression,
      autoGainControl: processing.autoGainControl,
      channelCount: 1,
    },
    video: false,
  };
}

export class AudioEngine {
  /** @param {AudioCallbacks} callbacks */
  constructor(callbacks) {
    this.callbacks = callbacks;
    /** @type {AudioContext | null} */
    this.context = null;
    /** @type {MediaStream | null} */
    this.stream = null;
    /** @type {MediaStreamAudioSourceNode | null} */
    this.source = null;
    /** @type {AudioWorkletNode | null} */
    this.capture = null;
    /** @type {AudioWorkletNode | null} */
    this.playback = null;
    this.muted = false;
    /** @type {Promise<void>} */
    this.microphoneQueue = Promise.resolve();
  }

  /** @returns {number} the context's rate (0 before start) */
  get sampleRate() {
    return this.context ? this.context.sampleRate : 0;
  }

  /**
   * Open the microphone and build the graph. Call from a user gesture (autoplay policies).
   * @param {ProcessingOptions} processing
   */
  async start(processing) {
    const context = new AudioContext({ latencyHint: "interactive" });
    this.context = context;
    try {
      await Promise.all([
        context.audioWorklet.addModule(new URL("./capture-worklet.js", import.meta.url)),
        context.audioWorklet.addModule(new URL("./playback-worklet.js", import.meta.url)),
      ]);
      this.playback = new AudioWorkletNode(context, "realtalk-playback", {
        numberOfInputs: 0,
        numberOfOutputs: 1,
        outputChannelCount: [1],
      });
      this.playback.port.onmessage = (event) => this.fromPlayback(event.data);
      this.playback.connect(context.destination);
      // No outputs: the node is a sink; browsers still run it (it has an active input).
      this.capture = new AudioWorkletNode(context, "realtalk-capture", {
        numberOfInputs: 1,
        numberOfOutputs: 0,
        channelCount: 1,
        channelCountMode: "explicit",
        channelInterpretation: "speakers",
        processorOptions: { chunkMs: 20 },
      });
      this.capture.port.onmessage = (event) => {
        if (event.data.type === "chunk") this.callbacks.onChunk(event.data.pcm, event.data.peak);
      };
      await this.openMicrophone(processing);
      if (context.state !== "running") await context.resume();
    } catch (error) {
      await this.stop();
      throw error;
    }
  }

  /**
   * (Re)open the microphone with new processing options, e.g. when "headphones" is toggled.
   *
   * Chromium keeps one capture source per device, processed as it was first opened: neither
   * `applyConstraints` nor a second `getUserMedia` changes echo cancellation while a track is
   * live (they silently return the old settings). So the old track is released first; the gap
   * is a few tens of milliseconds of silence. Calls are serialised (quick toggles).
   * @param {ProcessingOptions} processing
   * @returns {Promise<void>}
   */
  openMicrophone(processing) {
    const next = this.microphoneQueue.then(() => this.replaceMicrophone(processing));
    this.microphoneQueue = next.catch(() => undefined);
    return next;
  }

  /** @param {ProcessingOptions} processing */
  async replaceMicrophone(processing) {
    if (!this.context || !this.capture) return;
    this.source?.disconnect();
    this.stream?.getTracks().forEach((track) => track.stop());
    this.source = null;
    this.stream = null;
    const stream = await navigator.mediaDevices.getUserMedia(microphoneConstraints(processing));
    if (!this.context || !this.capture) {
      stream.getTracks().forEach((track) => track.stop()); // stopped meanwhile
      return;
    }
    this.source = this.context.createMediaStreamSource(stream);
    this.source.connect(this.capture);
    this.stream = stream;
    this.setMuted(this.muted);
  }

  /**
   * Mute by disabling the track: a disabled track delivers silence, so the server's VAD still
   * sees the end of a turn and no audio leaves the page.
   * @param {boolean} muted
   */
  setMuted(muted) {
    this.muted = muted;
    this.stream?.getAudioTracks().forEach((track) => {
      track.enabled = !muted;
    });
  }

  /** @returns {boolean | null} whether the live microphone track is disabled (null: none open) */
  get microphoneMuted() {
    const track = this.stream?.getAudioTracks()[0];
    return track ? !track.enabled : null;
  }

  /** @returns {MediaTrackSettings | null} what the browser actually applied to the microphone */
  microphoneSettings() {
    const track = this.stream?.getAudioTracks()[0];
    return track ? track.getSettings() : null;
  }

  /**
   * Queue 24 kHz PCM16 for playback; the buffer is transferred, not copied.
   * @param {string} itemId
   * @param {Uint8Array} bytes
   */
  play(itemId, bytes) {
    if (!this.playback) return;
    // An odd byte count would misalign every later sample: drop the stray byte.
    const even = bytes.byteLength & ~1;
    const pcm =
      bytes.byteOffset === 0 && even === bytes.buffer.byteLength
        ? bytes.buffer
        : bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + even);
    this.playback.port.postMessage({ type: "push", itemId, pcm }, [pcm]);
  }

  /** Drop everything not yet played; the worklet answers with `onFlushed`. */
  flush() {
    this.playback?.port.postMessage({ type: "flush" });
  }

  /** @param {any} message */
  fromPlayback(message) {
    if (message.type === "progress") this.callbacks.onProgress(message.itemId, message.played, message.playing);
    else if (message.type === "flushed") this.callbacks.onFlushed(message.items, message.flushCount);
    else if (message.type === "overflow") this.callbacks.onOverflow(message.droppedSamples);
  }

  async stop() {
    this.stream?.getTracks().forEach((track) => track.stop());
    this.source?.disconnect();
    this.capture?.port.close();
    this.playback?.port.close();
    const context = this.context;
    this.stream = null;
    this.source = null;
    this.capture = null;
    this.playback = null;
    this.context = null;
    if (context && context.state !== "closed") await context.close();
  }
}
