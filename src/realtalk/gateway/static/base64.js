/**
 * Base64 for audio payloads, on the main thread.
 *
 * Why not `btoa(String.fromCharCode(...bytes))`: spreading a large array blows the argument
 * limit and builds throwaway strings per byte. The native `Uint8Array.prototype.toBase64` /
 * `Uint8Array.fromBase64` (recent Chromium and Firefox) are used when present; otherwise a
 * table-driven codec that touches each byte once.
 *
 * @module base64
 */

const ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const DECODE = new Int16Array(128).fill(-1);
for (let i = 0; i < ALPHABET.length; i++) DECODE[ALPHABET.charCodeAt(i)] = i;

/** @type {((bytes: Uint8Array) => string) | null} */
const nativeEncode =
  typeof (/** @type {any} */ (Uint8Array.prototype).toBase64) === "function"
    ? (bytes) => /** @type {any} */ (bytes).toBase64()
    : null;

/** @type {((text: string) => Uint8Array) | null} */
const nativeDecode =
  typeof (/** @type {any} */ (Uint8Array).fromBase64) === "function"
    ? (text) => /** @type {any} */ (Uint8Array).fromBase64(text)
    : null;

/**
 * @param {Uint8Array} bytes
 * @returns {string} standard base64 with padding
 */
export function encodeBase64(bytes) {
  if (nativeEncode) return nativeEncode(bytes);
  const parts = [];
  // Chunks of 3 * 4096 bytes keep each String.fromCharCode call's argument list small.
  for (let start = 0; start < bytes.length; start += 12288) {
    const end = Math.min(bytes.length, start + 12288);
    const codes = new Array(Math.ceil((end - start) / 3) * 4);
    let k = 0;
    for (let i = start; i < end; i += 3) {
      const a = bytes[i];
      const b = i + 1 < end ? bytes[i + 1] : 0;
      const c = i + 2 < end ? bytes[i + 2] : 0;
      codes[k++] = ALPHABET.charCodeAt(a >> 2);
      codes[k++] = ALPHABET.charCodeAt(((a & 3) << 4) | (b >> 4));
      codes[k++] = i + 1 < end ? ALPHABET.charCodeAt(((b & 15) << 2) | (c >> 6)) : 61; // '='
      codes[k++] = i + 2 < end ? ALPHABET.charCodeAt(c & 63) : 61;
    }
    parts.push(String.fromCharCode.apply(null, codes));
  }
  return parts.join("");
}

/**
 * @param {string} text standard base64 (padding optional)
 * @returns {Uint8Array}
 */
export function decodeBase64(text) {
  if (nativeDecode) return nativeDecode(text);
  let length = text.length;
  while (length > 0 && text.charCodeAt(length - 1) === 61) length--;
  const bytes = new Uint8Array(Math.floor((length * 3) / 4));
  let buffer = 0;
  let bits = 0;
  let k = 0;
  for (let i = 0; i < length; i++) {
    const code = text.charCodeAt(i);
    const value = code < 128 ? DECODE[code] : -1;
    if (value < 0) throw new SyntaxError(`invalid base64 character at ${i}`);
    buffer = ((buffer << 6) | value) & 0xffffff; // only the unread low bits matter
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      bytes[k++] = (buffer >> bits) & 255;
    }
  }
  return bytes;
}
