/**
 * What a closed connection means to the user, in a sentence: never a bare close code.
 *
 * The gateway gives a reason with every close it chooses (docs/gateway.md, "Closing"). Most are
 * whole sentences meant for the user (its limits, a restart, no upstream session, the upstream's
 * own sentence passed on): those are shown as they are. A few are short fragments meant for
 * logs as much as people (an upstream drop, a gateway error, the budget); those, and a close with
 * no reason at all, are turned into sentences here. The code itself stays in
 * `window.realtalk.closeInfo` for whoever needs it.
 *
 * @module closing
 */

/** A close with no reason (or one not meant for people), by code (RFC 6455, section 7.4.1). */
const CODE_SENTENCES = new Map([
  [1000, "The session ended."],
  [1001, "The server went away (it restarted, or the session reached its time limit); start again."],
  [1006, "The connection to the gateway was lost."],
  [1008, "The gateway ended the session because it broke one of its rules."],
  [1009, "A message was too large, so the gateway closed the connection."],
  [1011, "The gateway ended the session after an error; start again."],
  [1012, "The gateway is restarting; start again in a few seconds."],
  [1013, "The gateway is busy; try again in a little while."],
]);
const OTHER_CLOSE = "The connection closed unexpectedly.";

/**
 * The gateway's reasons that are not sentences, and the sentence each stands for.
 * @type {[RegExp, (match: RegExpMatchArray) => string][]}
 */
const FRAGMENTS = [
  [/^upstream connection lost \(\d+\)$/, () => "The connection to the Realtime service was lost; start again."],
  [/^upstream closed the session \(\d+\)$/, () => "The Realtime service ended the session."],
  [/^gateway error$/, () => "The gateway hit an internal error and ended the session; start again."],
  [/^the gateway ended the session$/, () => "The gateway ended the session; start again."],
  [
    /^session budget of \$(\d+(?:\.\d+)?) reached \(spent \$(\d+(?:\.\d+)?)\)$/,
    (match) => `This session's budget of ${dollars(match[1], 2)} is spent (${dollars(match[2], 4)}); start again for a new one.`,
  ],
];

/** @param {string} amount @param {number} digits @returns {string} */
function dollars(amount, digits) {
  return `$${Number(amount).toFixed(digits)}`;
}

/** @param {string} text @returns {boolean} whether it reads as a sentence meant for people */
function isSentence(text) {
  return /^[A-Z].*[.!?]$/s.test(text);
}

/**
 * @param {number} code the close code
 * @param {string} reason the close reason ("" when none was given)
 * @returns {string} one sentence for the user
 */
export function describeClose(code, reason) {
  const text = reason.trim();
  for (const [pattern, sentence] of FRAGMENTS) {
    const match = text.match(pattern);
    if (match) return sentence(match);
  }
  if (isSentence(text)) return text;
  const general = CODE_SENTENCES.get(code) ?? OTHER_CLOSE;
  // A reason we do not know, e.g. an upstream's: keep it, after words that frame it.
  return text ? `${general.slice(0, -1)}: “${text}”.` : general;
}

/** What the page says when the very first handshake was refused (browsers hide the HTTP status). */
export const REFUSED_SENTENCE =
  "The gateway refused the connection: it may be at its session limit, or this page's address is not allowed. Try again shortly.";

/** What the page says when the user stopped the session. */
export const STOPPED_SENTENCE = "Stopped. Press Start to talk again.";
