/**
 * Playback worklet: 24 kHz PCM16 from `response.output_audio.delta` -> the context's rate, with an
 * exact count of the samples of each item that were actually played.
 *
 * Why the count matters: after a barge-in the Python core truncates the assistant item at what
 * the user heard (`conversation.item.truncate.audio_end_ms`); wall-clock estimates or "what was
 * received" are the classic bugs (lessons.md, mistakes 7, 8, 10). The only honest witness of what
 * reached the speaker is the code that hands samples to the audio device: this processor.
 *
 * Ring buffer: one preallocated Int16Array at 24 kHz (the wire format, so a delta is copied in as
 * is, at half the memory of floats), indexed by absolute sample positions masked to a power-of-two
 * length. Writes that do not fit are dropped and counted, never queued: the ring is the bound
 * (default 80+ s of audio, more than a reply ever runs ahead of playback).
 *
 * Resampling on the way out: each output frame renders the signal at fractional 24 kHz position
 * `anchor + frames * 24000 / sampleRate` through the shared windowed-sinc kernel. The `taps/2`
 * samples after the last one written are kept at zero, so the tail of an item is rendered
 * without waiting for look-ahead that will never come.
 *
 * Played-count semantics (24 kHz units, per item): a sample counts once an output frame has
 * rendered its instant, i.e. once it has been handed to the device. After the last sample of an
 * item is rendered, its count equals the samples received for it, exactly. When the ring runs
 * dry (network late, or the reply is over) output is silence and positions do not advance, so
 * silence is never counted. A flush (barge-in) drops everything not yet rendered and answers with
 * the final count of every item that was in the ring.
 *
 * Items: contiguous runs of one `item_id` form segments (a small preallocated table); a new id
 * starts a new segment at the current write position.
 *
 * Messages in: `{type: "push", itemId, pcm: ArrayBuffer}`, `{type: "flush"}`.
 * Messages out: `{type: "progress", itemId, played, playing}` about every 100 ms while playing,
 * at once when an item starts or finishes and when playback stops; `{type: "flushed", items:
 * [[itemId, played], ...], flushCount}`; `{type: "overflow", droppedSamples}`.
 *
 * @module playback-worklet
 */

import { SincKernel, powerOfTwoAtLeast } from "./resampler.js";

const SOURCE_RATE_HZ = 24000;
const MAX_SEGMENTS = 64;
const REPORT_INTERVAL_S = 0.1;

class PlaybackProcessor extends AudioWorkletProcessor {
  /** @param {{processorOptions?: {capacitySeconds?: number}}} options */
  constructor(options) {
    super();
    const capacitySeconds = options?.processorOptions?.capacitySeconds ?? 80;
    this.ring = new Int16Array(powerOfTwoAtLeast(capacitySeconds * SOURCE_RATE_HZ));
    this.mask = this.ring.length - 1;
    this.passthrough = sampleRate === SOURCE_RATE_HZ;
    this.kernel = new SincKernel(SOURCE_RATE_HZ, sampleRate);
    this.step = SOURCE_RATE_HZ / sampleRate;
    this.lookahead = this.passthrough ? 0 : this.kernel.lookahead;
    this.written = 0; // absolute 24 kHz samples written
    // Frame n after the anchor renders position anchor + n * step (from a count: no drift).
    this.anchor = 0;
    this.frames = 0;
    this.rendered = 0; // samples below this position have been rendered (played)
    /** @type {string[]} */
    this.segmentItem = new Array(MAX_SEGMENTS).fill("");
    this.segmentStart = new Float64Array(MAX_SEGMENTS);
    this.segmentHead = 0;
    this.segmentCount = 0;
    this.lastReported = -1; // played count in the last progress report of the head segment
    this.playing = false;
    this.quantaSinceReport = 0;
    this.reportEveryQuanta = Math.max(1, Math.round((REPORT_INTERVAL_S * sampleRate) / 128));
    this.droppedSamples = 0;
    this.flushCount = 0;
    this.port.onmessage = (event) => this.receive(event.data);
  }

  /** @param {{type: string, itemId?: string, pcm?: ArrayBuffer}} message */
  receive(message) {
    if (message.type === "push" && message.pcm && message.itemId) {
      this.push(message.itemId, new Int16Array(message.pcm));
    } else if (message.type === "flush") {
      this.flush();
    }
  }

  /** @param {number} index a segment's offset from the head @returns {number} its table slot */
  slot(index) {
    return (this.segmentHead + index) % MAX_SEGMENTS;
  }

  /** @param {number} index @returns {number} the write position where the segment ends */
  segmentEnd(index) {
    return index + 1 < this.segmentCount ? this.segmentStart[this.slot(index + 1)] : this.written;
  }

  /** @param {number} index @returns {number} samples of the segment rendered so far */
  playedIn(index) {
    const start = this.segmentStart[this.slot(index)];
    const end = this.segmentEnd(index);
    return Math.max(0, Math.min(this.rendered, end) - start);
  }

  /**
   * @param {string} itemId
   * @param {Int16Array} samples
   */
  push(itemId, samples) {
    const last = this.segmentCount - 1;
    if (this.segmentCount === 0 || this.segmentItem[this.slot(last)] !== itemId) {
      if (this.segmentCount === MAX_SEGMENTS) {
        // 64 items queued ahead of the speaker cannot happen in a conversation; stay bounded.
        this.droppedSamples += samples.length;
        this.port.postMessage({ type: "overflow", droppedSamples: this.droppedSamples });
        return;
      }
      const slot = this.slot(this.segmentCount);
      this.segmentItem[slot] = itemId;
      this.segmentStart[slot] = this.written;
      this.segmentCount++;
    }
    // Keep the kernel's history (taps) behind the play position and the zeroed look-ahead.
    const used = this.written - this.rendered + this.kernel.taps + this.lookahead;
    const room = Math.max(0, this.ring.length - used);
    const count = Math.min(room, samples.length);
    const ring = this.ring;
    const mask = this.mask;
    for (let i = 0; i < count; i++) ring[(this.written + i) & mask] = samples[i];
    this.written += count;
    for (let i = 0; i < this.lookahead; i++) ring[(this.written + i) & mask] = 0;
    if (count < samples.length) {
      this.droppedSamples += samples.length - count;
      this.port.postMessage({ type: "overflow", droppedSamples: this.droppedSamples });
    }
  }

  /** Barge-in: drop what was not rendered, report the final count of every item in the ring. */
  flush() {
    /** @type {[string, number][]} */
    const items = [];
    for (let i = 0; i < this.segmentCount; i++) items.push([this.segmentItem[this.slot(i)], this.playedIn(i)]);
    this.flushCount++;
    // Restart at the write position; zero the kernel's history there so the next item does not
    // start with an echo of the audio just dropped.
    const taps = this.kernel.taps;
    for (let i = 1; i <= taps; i++) this.ring[(this.written - i) & this.mask] = 0;
    this.anchor = this.written;
    this.frames = 0;
    this.rendered = this.written;
    this.segmentHead = 0;
    this.segmentCount = 0;
    this.lastReported = -1;
    this.playing = false;
    this.port.postMessage({ type: "flushed", items, flushCount: this.flushCount });
  }

  /** Drop finished segments (reporting their final count); keep the last one for a later flush. */
  retireFinished() {
    while (this.segmentCount > 1 && this.rendered >= this.segmentStart[this.slot(1)]) {
      const slot = this.slot(0);
      this.report(this.segmentItem[slot], this.segmentStart[this.slot(1)] - this.segmentStart[slot]);
      this.segmentHead = this.slot(1);
      this.segmentCount--;
      this.lastReported = -1;
    }
  }

  /** @param {string} itemId @param {number} played */
  report(itemId, played) {
    this.port.postMessage({ type: "progress", itemId, played, playing: this.playing });
    this.quantaSinceReport = 0;
  }

  /**
   * @param {Float32Array[][]} _inputs
   * @param {Float32Array[][]} outputs
   * @returns {boolean}
   */
  process(_inputs, outputs) {
    const out = outputs[0][0];
    const ring = this.ring;
    const mask = this.mask;
    const kernel = this.kernel;
    const written = this.written;
    let i = 0;
    for (; i < out.length; i++) {
      const x = this.anchor + this.frames * this.step;
      const base = Math.floor(x);
      if (base >= written) break; // ran dry: the rest of the quantum is silence
      out[i] = (this.passthrough ? ring[base & mask] : kernel.valueAt(ring, mask, x)) / 32768;
      this.frames++;
      this.rendered = base + 1;
    }
    for (let j = i; j < out.length; j++) out[j] = 0;
    // Copy to any further channel the destination asked for (the node is mono by design).
    for (let c = 1; c < outputs[0].length; c++) outputs[0][c].set(out);

    if (this.segmentCount === 0) return true;
    const wasPlaying = this.playing;
    this.playing = i > 0;
    this.retireFinished();
    const played = this.playedIn(0);
    const itemId = this.segmentItem[this.slot(0)];
    this.quantaSinceReport++;
    const started = this.lastReported <= 0 && played > 0; // first audible samples: report now
    const due = this.quantaSinceReport >= this.reportEveryQuanta && played !== this.lastReported;
    if (started || due || wasPlaying !== this.playing) {
      this.report(itemId, played);
      this.lastReported = played;
    }
    return true;
  }
}

registerProcessor("realtalk-playback", PlaybackProcessor);
