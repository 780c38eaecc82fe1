/**
 * Capture worklet: microphone at the context's own rate -> 24 kHz PCM16 chunks for the main thread.
 *
 * Why here and not on the main thread: the audio thread delivers every 128-frame quantum on
 * time; resampling on the main thread would stall with the page (layout, GC, a busy tab).
 * Why not `new AudioContext({sampleRate: 24000})`: Firefox refuses to connect a microphone to a
 * context at another rate than the device's, so the context keeps its default rate and this
 * worklet does the conversion (lessons.md, mistake 11).
 *
 * Design: input quanta go into a power-of-two Float32 ring by absolute position; the read
 * position advances by inputRate / 24000 per output sample and an output is computed only once
 * the kernel's look-ahead has arrived, so the filter's state simply *is* the ring (stateful
 * across quanta, nothing shifted). Outputs are converted to Int16 (clamped, rounded) into a
 * chunk buffer; a full chunk (20-40 ms, `chunkMs` option) is posted with its buffer transferred,
 * so no copy crosses threads and the audio thread allocates once per chunk, never per quantum.
 *
 * Messages to the main thread: `{type: "chunk", pcm: ArrayBuffer (Int16 LE, 24 kHz), peak}`.
 * Messages from it: `{type: "reset"}` drops any partial chunk (a new session starts clean).
 *
 * @module capture-worklet
 */

import { SincKernel, powerOfTwoAtLeast } from "./resampler.js";

/** The Realtime API's PCM16 rate. */
const TARGET_RATE_HZ = 24000;

class CaptureProcessor extends AudioWorkletProcessor {
  /** @param {{processorOptions?: {chunkMs?: number}}} options */
  constructor(options) {
    super();
    const requestedMs = options?.processorOptions?.chunkMs ?? 20;
    // The issue asks for 20-40 ms: small enough for prompt VAD, large enough to keep event rates sane.
    const chunkMs = Math.min(40, Math.max(20, requestedMs));
    this.chunkSamples = Math.round((TARGET_RATE_HZ * chunkMs) / 1000);
    // `sampleRate` is the AudioWorkletGlobalScope's: the context's own rate.
    this.passthrough = sampleRate === TARGET_RATE_HZ;
    this.kernel = this.passthrough ? null : new SincKernel(sampleRate, TARGET_RATE_HZ);
    const lookahead = this.kernel ? this.kernel.taps : 0;
    this.ring = new Float32Array(powerOfTwoAtLeast(4 * (lookahead + 128)));
    this.mask = this.ring.length - 1;
    this.written = 0; // absolute input samples written
    // Output n sits at input position n * step: computed from the count, never accumulated, so
    // rounding cannot drift over a long session.
    this.produced = 0;
    this.chunk = new Int16Array(this.chunkSamples);
    this.filled = 0;
    this.peak = 0;
    this.port.onmessage = (event) => {
      if (event.data?.type === "reset") {
        this.filled = 0;
        this.peak = 0;
      }
    };
  }

  /** @param {number} value a sample in [-1, 1] (clamped) */
  emit(value) {
    const clamped = value > 1 ? 1 : value < -1 ? -1 : value;
    const magnitude = clamped < 0 ? -clamped : clamped;
    if (magnitude > this.peak) this.peak = magnitude;
    this.chunk[this.filled++] = Math.round(clamped < 0 ? clamped * 32768 : clamped * 32767);
    if (this.filled === this.chunkSamples) {
      const pcm = this.chunk.buffer;
      this.port.postMessage({ type: "chunk", pcm, peak: this.peak }, [pcm]);
      this.chunk = new Int16Array(this.chunkSamples);
      this.filled = 0;
      this.peak = 0;
    }
  }

  /**
   * @param {Float32Array[][]} inputs
   * @returns {boolean}
   */
  process(inputs) {
    const channels = inputs[0];
    // No input connected yet (or the track ended): nothing to do, but stay alive.
    if (!channels || channels.length === 0) return true;
    const frames = channels[0].length;
    const ring = this.ring;
    const mask = this.mask;
    for (let i = 0; i < frames; i++) {
      // Down-mix by averaging, in case a device ignores channelCount: 1.
      let sum = 0;
      for (let c = 0; c < channels.length; c++) sum += channels[c][i];
      ring[(this.written + i) & mask] = sum / channels.length;
    }
    this.written += frames;
    if (this.passthrough) {
      for (; this.produced < this.written; this.produced++) this.emit(ring[this.produced & mask]);
      return true;
    }
    const kernel = /** @type {SincKernel} */ (this.kernel);
    const limit = this.written - kernel.lookahead; // positions below it have their look-ahead
    for (let x = this.produced * kernel.step; Math.floor(x) < limit; x = this.produced * kernel.step) {
      this.emit(kernel.valueAt(ring, mask, x));
      this.produced++;
    }
    return true;
  }
}

registerProcessor("realtalk-capture", CaptureProcessor);
