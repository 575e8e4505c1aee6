// The only way this page talks to the gateway: the gated API, with the
// bearer token held in this module's memory (never browser storage, never a
// cookie) and the compliance purpose on every call. The page can do
// nothing its user's role cannot: the gateway decides every call.

export const PURPOSE = 'compliance_audit';

let token = null;
let onSignedOut = () => {};

export function signIn(value) {
  token = value;
}

export function signOut() {
  token = null;
}

export function isSignedIn() {
  return token !== null;
}

/** Called when the gateway says the token is no longer good (401). */
export function whenSignedOut(callback) {
  onSignedOut = callback;
}

export class ApiError extends Error {
  constructor(status, code, message, requestId) {
    super(message);
    this.status = status;
    this.code = code;
    this.requestId = requestId;
  }

  /** The route does not exist on this gateway (a feature not deployed). */
  get missingRoute() {
    return this.status === 404 && this.code === 'not_found' && this.message === 'no such route';
  }
}

function url(path, query) {
  const u = new URL(path, window.location.origin);
  for (const [k, v] of Object.entries(query || {})) {
    if (v !== undefined && v !== null && v !== '') u.searchParams.set(k, String(v));
  }
  return u;
}

/** Calls the API; resolves to the Response, rejects with an ApiError. */
export async function call(path, { method = 'GET', query, body } = {}) {
  if (token === null) throw new ApiError(401, 'unauthenticated', 'not signed in', null);
  const headers = {
    Authorization: `Bearer ${token}`,
    'X-Purpose': PURPOSE,
    Accept: 'application/json',
  };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let response;
  try {
    response = await fetch(url(path, query), {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: 'no-store',
      credentials: 'omit',
      referrerPolicy: 'no-referrer',
    });
  } catch {
    throw new ApiError(0, 'network', 'the gateway could not be reached', null);
  }
  if (response.ok) return response;
  let code = 'error';
  let message = `request failed (${response.status})`;
  try {
    const payload = await response.json();
    code = payload.error.code;
    message = payload.error.message;
  } catch {
    // Not our JSON envelope: keep the generic message.
  }
  const error = new ApiError(response.status, code, message, response.headers.get('x-request-id'));
  if (response.status === 401) {
    token = null;
    onSignedOut(error);
  }
  throw error;
}

export async function getJson(path, query) {
  return (await call(path, { query })).json();
}

export async function postJson(path, body) {
  return (await call(path, { method: 'POST', body })).json();
}
