/**
 * Getting the page a session cookie, without ever holding a secret in page state.
 *
 * The gateway authenticates the browser with an HttpOnly cookie: JavaScript cannot read it, and
 * the browser attaches it to the same-origin WebSocket by itself. If the page has no session
 * yet, the user types an access token once; it goes to the gateway in an `Authorization` header
 * (never in a URL, where it would land in logs and history), the gateway answers with the
 * cookie, and the input is cleared.
 *
 * Endpoints (relative to the page, so a path prefix works), as `gateway/routes/tokens.py`
 * serves them: `GET api/session` answers `{authenticated, auth_required, subject, expires_at}`;
 * `POST api/session` with `Authorization: Bearer <token>` sets the cookie.
 *
 * @module auth
 */

const SESSION_PATH = "api/session";

/**
 * @typedef {object} SessionCheck
 * @property {"ok" | "token-required" | "unavailable"} state
 * @property {Record<string, unknown>} info the gateway's answer (e.g. `upstream`, when it says)
 */

/** @returns {Promise<SessionCheck>} */
export async function checkSession() {
  try {
    const response = await fetch(new URL(SESSION_PATH, document.baseURI), {
      credentials: "same-origin",
      cache: "no-store",
    });
    if (response.ok) {
      const body = await response.json();
      const info = body && typeof body === "object" ? body : {};
      return { state: info.authenticated === false ? "token-required" : "ok", info };
    }
    if (response.status === 401 || response.status === 403) return { state: "token-required", info: {} };
    return { state: "unavailable", info: {} };
  } catch {
    return { state: "unavailable", info: {} };
  }
}

/**
 * @param {string} token
 * @returns {Promise<{ok: boolean, message: string}>}
 */
export async function signIn(token) {
  try {
    const response = await fetch(new URL(SESSION_PATH, document.baseURI), {
      method: "POST",
      credentials: "same-origin",
      cache: "no-store",
      headers: { Authorization: `Bearer ${token}` },
    });
    if (response.ok) return { ok: true, message: "" };
    // The gateway explains refusals as {"error": {"code", "message"}} (never echoing the token).
    const reason = await response.json().then(
      (body) => body?.error?.message,
      () => undefined,
    );
    if (response.status === 401) return { ok: false, message: `That token was not accepted: ${reason ?? "unauthorized"}.` };
    return { ok: false, message: `The gateway answered ${response.status}${reason ? `: ${reason}` : ""}.` };
  } catch {
    return { ok: false, message: "The gateway cannot be reached." };
  }
}
