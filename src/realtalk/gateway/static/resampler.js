/**
 * Band-limited streaming resampling, shared by the capture and playback worklets.
 *
 * Why a windowed-sinc kernel and not linear interpolation: capture runs at the context's own
 * rate (44.1 or 48 kHz; forcing 24 kHz breaks Firefox) and must reach the Realtime API's 24 kHz
 * PCM16 without folding 12-22 kHz energy (sibilants, fans) back into the speech band. A
 * Kaiser-windowed sinc is the low-pass and the interpolator in one: its cutoff sits just under
 * the lower rate's Nyquist frequency, and it is evaluated at any fractional input position.
 *
 * The kernel is tabulated once per rate pair at {@link PHASES} fractional offsets; a sample is
 * computed by interpolating linearly between the two nearest rows, so the audio thread does only
 * multiply-adds (no trigonometry, no allocation). Every row is normalised to a DC gain of exactly
 * 1, so the level does not ripple with the fractional phase.
 *
 * Streaming and state: callers keep their input in a power-of-two ring indexed by absolute
 * sample positions (plain numbers, exact up to 2^53) and keep the fractional read position
 * themselves; {@link SincKernel#valueAt} only reads. That is what makes the resampler stateful
 * across 128-frame render quanta at no cost: nothing is shifted or copied between quanta.
 *
 * Measured response (48 kHz or 44.1 kHz -> 24 kHz): -0.6 dB at 10 kHz, -4 dB at 11 kHz, under
 * -65 dB from 13 kHz (which would alias to 11 kHz) and under -100 dB from 14 kHz.
 *
 * @module resampler
 */

/** Fractional positions tabulated between two input samples. */
export const PHASES = 256;

/** Sinc zero crossings on each side of the centre: the kernel's length, in cutoff periods. */
const ZERO_CROSSINGS = 16;

/** Kaiser window shape: about 100 dB of stop-band rejection with {@link ZERO_CROSSINGS}. */
const KAISER_BETA = 10;

/** Cutoff as a fraction of the lower rate's Nyquist frequency: keeps speech flat to 10 kHz. */
const CUTOFF_FRACTION = 0.92;

/**
 * The zeroth-order modified Bessel function of the first kind, by its power series (the Kaiser
 * window needs it; the series converges fast for the arguments used here).
 * @param {number} x
 * @returns {number}
 */
function besselI0(x) {
  let sum = 1;
  let term = 1;
  const quarterSquare = (x * x) / 4;
  for (let k = 1; k < 64; k++) {
    term *= quarterSquare / (k * k);
    sum += term;
    if (term < sum * 1e-17) break;
  }
  return sum;
}

/** @param {number} x @returns {number} sin(pi x) / (pi x) */
function sinc(x) {
  if (x === 0) return 1;
  const px = Math.PI * x;
  return Math.sin(px) / px;
}

/** A tabulated low-pass interpolation kernel for one input/output rate pair. */
export class SincKernel {
  /**
   * @param {number} inputRateHz rate of the samples read from the ring
   * @param {number} outputRateHz rate of the samples produced
   */
  constructor(inputRateHz, outputRateHz) {
    if (!(inputRateHz > 0 && outputRateHz > 0)) {
      throw new RangeError(`rates must be positive, got ${inputRateHz} -> ${outputRateHz}`);
    }
    /** Input samples advanced per output sample. */
    this.step = inputRateHz / outputRateHz;
    // Cutoff in cycles per input sample, times two (1.0 would be the input's Nyquist frequency).
    const bandwidth = (CUTOFF_FRACTION * Math.min(inputRateHz, outputRateHz)) / inputRateHz;
    const halfWidth = ZERO_CROSSINGS / bandwidth; // in input samples
    /** Taps per output sample (even): inputs from floor(x) - taps/2 + 1 to floor(x) + taps/2. */
    this.taps = 2 * Math.ceil(halfWidth);
    /** Input samples needed after floor(x) before the sample at x can be computed. */
    this.lookahead = this.taps / 2;
    const half = this.taps / 2;
    const norm = besselI0(KAISER_BETA);
    /** Rows 0..PHASES (one extra, so interpolation never reads past the end). */
    this.table = new Float32Array((PHASES + 1) * this.taps);
    for (let phase = 0; phase <= PHASES; phase++) {
      const frac = phase / PHASES;
      const row = phase * this.taps;
      let sum = 0;
      for (let j = 0; j < this.taps; j++) {
        const offset = j - half + 1 - frac; // input sample position minus the wanted position
        const ratio = offset / halfWidth;
        const window = Math.abs(ratio) < 1 ? besselI0(KAISER_BETA * Math.sqrt(1 - ratio * ratio)) / norm : 0;
        const value = bandwidth * sinc(bandwidth * offset) * window;
        this.table[row + j] = value;
        sum += value;
      }
      for (let j = 0; j < this.taps; j++) this.table[row + j] /= sum;
    }
  }

  /**
   * The band-limited value at fractional position `x` of a ring of samples.
   *
   * The caller guarantees that positions floor(x) - taps/2 + 1 .. floor(x) + taps/2 hold valid
   * samples (or silence it put there on purpose).
   *
   * @param {Float32Array | Int16Array} ring samples by absolute position, wrapped by `mask`
   * @param {number} mask ring length minus one (the length is a power of two)
   * @param {number} x absolute fractional input position (>= 0)
   * @returns {number} the value, in the ring's own units
   */
  valueAt(ring, mask, x) {
    const base = Math.floor(x);
    const phasePosition = (x - base) * PHASES;
    const phase = Math.floor(phasePosition);
    const blend = phasePosition - phase;
    const taps = this.taps;
    const table = this.table;
    const rowA = phase * taps;
    const rowB = rowA + taps;
    const first = base - taps / 2 + 1;
    let acc = 0;
    for (let j = 0; j < taps; j++) {
      const a = table[rowA + j];
      const weight = a + (table[rowB + j] - a) * blend;
      // `& mask` on a non-negative integer below 2^53 keeps its low bits: the ring index.
      acc += weight * ring[(first + j) & mask];
    }
    return acc;
  }
}

/**
 * The smallest power of two >= n (ring lengths are powers of two so `& mask` wraps them).
 * @param {number} n
 * @returns {number}
 */
export function powerOfTwoAtLeast(n) {
  let size = 1;
  while (size < n) size *= 2;
  return size;
}
