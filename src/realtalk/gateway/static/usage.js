/**
 * Today's usage of the signed-in user: what they spent, against their daily budget.
 *
 * `GET api/usage` (`gateway/routes/usage.py`) answers for the caller only, with exact decimal
 * strings. The page asks when it learns the user may talk (first contact, sign-in), about a second
 * after a session ends (the ledger commits a response within a second of it), and every 30 s while
 * the page is visible and no session runs. Amounts are rounded from the strings, never through a
 * float, so the line agrees with the ledger to the digit it shows.
 *
 * @module usage
 */

const USAGE_PATH = "api/usage";
/** How often an idle, visible page asks again (other tabs and devices spend too). */
export const POLL_MS = 30_000;
/** After a session ends: its last response is committed within a second. */
export const AFTER_SESSION_MS = 1_200;

/**
 * @typedef {object} Usage the gateway's answer
 * @property {boolean} ledger whether usage is recorded at all
 * @property {string} user
 * @property {string | null} spent_usd today, exact
 * @property {number | null} sessions started today
 * @property {string | null} daily_cap_usd the user's own daily cap
 * @property {string | null} remaining_usd what the tightest daily cap leaves today
 * @property {"user" | "deployment" | "gateway" | null} limited_by which cap that is
 * @property {string} resets_at ISO time (midnight UTC)
 * @property {number} resets_in_s
 * @property {string | null} session_budget_usd
 */

/**
 * @typedef {{state: "ok", usage: Usage} | {state: "signed-out"} | {state: "unavailable"}} UsageAnswer
 */

/** @returns {Promise<UsageAnswer>} */
export async function fetchUsage() {
  try {
    const response = await fetch(new URL(USAGE_PATH, document.baseURI), {
      credentials: "same-origin",
      cache: "no-store",
    });
    if (response.ok) {
      const body = await response.json();
      return body && typeof body === "object" ? { state: "ok", usage: body } : { state: "unavailable" };
    }
    if (response.status === 401) return { state: "signed-out" };
    return { state: "unavailable" };
  } catch {
    return { state: "unavailable" };
  }
}

/**
 * A non-negative decimal string rounded half up to `places`, as a string (exact: BigInt digits).
 * @param {string} text e.g. "0.012345678" @param {number} places
 * @returns {string | null} null when `text` is not a plain decimal
 */
export function roundDecimal(text, places) {
  const match = /^(\d+)(?:\.(\d*))?$/.exec(String(text).trim());
  if (!match) return null;
  const fraction = (match[2] ?? "").padEnd(places + 1, "0");
  const scaled = BigInt(match[1] + fraction.slice(0, places + 1));
  const rounded = ((scaled + 5n) / 10n).toString().padStart(places + 1, "0");
  if (places === 0) return rounded;
  return `${rounded.slice(0, -places)}.${rounded.slice(-places)}`;
}

/**
 * Dollars to show, rounded half up to 4 decimals; `trim` drops trailing zeros down to 2 (a cap
 * as it was set: "$5.00", "$0.0001", "$1.234"). An amount above 0 too small for 4 decimals is
 * "< $0.0001".
 * @param {string} text @param {{trim?: boolean}} [options]
 * @returns {string}
 */
export function formatUsd(text, { trim = false } = {}) {
  const rounded = roundDecimal(text, 4);
  if (rounded === null) return "–";
  if (/^0\.0000$/.test(rounded) && /[1-9]/.test(text)) return "< $0.0001";
  return `$${trim ? rounded.replace(/^(\d+\.\d\d\d*?)0+$/, "$1") : rounded}`;
}

const SCOPE_NAMES = new Map([
  ["user", "your daily budget"],
  ["deployment", "the deployment's daily budget"],
  ["gateway", "the gateway's daily budget"],
]);

/** @param {number} seconds @returns {string} "5 h 12 min", "40 min" */
function formatWait(seconds) {
  const minutes = Math.max(1, Math.ceil(seconds / 60));
  const hours = Math.floor(minutes / 60);
  return hours > 0 ? `${hours} h ${minutes % 60} min` : `${minutes} min`;
}

/**
 * The usage line, in words.
 * @param {Usage} usage
 * @returns {string}
 */
export function describeUsage(usage) {
  if (!usage.ledger) return "Usage is not recorded on this gateway.";
  const spent = formatUsd(usage.spent_usd ?? "0");
  const cap = usage.daily_cap_usd ? ` of ${formatUsd(usage.daily_cap_usd, { trim: true })}` : "";
  const parts = [`Today: ${spent}${cap}`];
  const sessions = Number(usage.sessions ?? 0);
  parts.push(`${sessions} ${sessions === 1 ? "session" : "sessions"}`);
  const scope = usage.limited_by ? SCOPE_NAMES.get(usage.limited_by) ?? usage.limited_by : null;
  if (usage.remaining_usd === null || scope === null) {
    parts.push("no daily cap");
  } else if (/^[0.]+$/.test(usage.remaining_usd)) {
    parts.push(`${scope} is reached; it resets in ${formatWait(usage.resets_in_s)}`);
  } else if (usage.limited_by !== "user") {
    // The user's own cap is already "of $X"; another scope leaving less is worth saying.
    parts.push(`${formatUsd(usage.remaining_usd, { trim: true })} left (${scope})`);
  }
  return parts.join(" · ");
}

/** Keeps the usage line current, lightly: see the module's comment for when it asks. */
export class UsageMonitor {
  /**
   * @param {(answer: UsageAnswer) => void} render
   */
  constructor(render) {
    this.render = render;
    /** Whether the page may ask (the user is signed in, or no sign-in is needed). */
    this.enabled = false;
    /** A session is running: the "This session" card counts; polling waits. */
    this.inSession = false;
    /** @type {UsageAnswer | null} */
    this.last = null;
    /** @type {ReturnType<typeof setTimeout> | null} */
    this.soon = null;
    this.inFlight = false;
    setInterval(() => {
      if (this.enabled && !this.inSession && document.visibilityState === "visible") void this.refresh();
    }, POLL_MS);
  }

  /** @param {boolean} enabled the gateway said this page may start a session */
  setEnabled(enabled) {
    this.enabled = enabled;
    if (enabled) void this.refresh();
    else this.render({ state: "signed-out" });
  }

  /**
   * Follows the page's status: a session that ends is followed by a refresh.
   * @param {boolean} live a session is connecting or open
   */
  setInSession(live) {
    if (this.inSession && !live && this.enabled) {
      if (this.soon !== null) clearTimeout(this.soon);
      this.soon = setTimeout(() => {
        this.soon = null;
        void this.refresh();
      }, AFTER_SESSION_MS);
    }
    this.inSession = live;
  }

  async refresh() {
    if (this.inFlight) return;
    this.inFlight = true;
    try {
      const answer = await fetchUsage();
      this.last = answer;
      if (answer.state === "signed-out") this.enabled = false;
      this.render(answer);
    } finally {
      this.inFlight = false;
    }
  }
}
