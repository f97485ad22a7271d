// The public API, called with the console's session cookie (sent by the browser, never
// readable here: HttpOnly) and the session's CSRF token in a header.

const API = "/connect-service/v2.1";
const CSRF = "X-Gatehouse-CSRF";
let csrfToken = "";
let orgId = ""; // the session's, in every call's query as EnOS's URLs have it

export class ApiError extends Error {
  constructor(status, code, msg) {
    super(msg);
    this.status = status;
    this.code = code;
  }
}

async function envelope(response) {
  let body;
  try {
    body = await response.json();
  } catch {
    throw new ApiError(response.status, 0, `HTTP ${response.status} with no JSON answer`);
  }
  if (!response.ok || body.code !== 0) {
    const failure = new ApiError(response.status, body.code, body.msg || `HTTP ${response.status}`);
    if (response.status === 401) window.dispatchEvent(new CustomEvent("gatehouse:signed-out"));
    throw failure;
  }
  return body;
}

// One API call: the whole envelope ({data, pagination, ...}); an ApiError if refused.
export async function call(resource, action, body = undefined, query = {}) {
  const params = new URLSearchParams({ action });
  for (const [k, v] of Object.entries(query)) if (v !== undefined && v !== null) params.set(k, v);
  if (orgId && !params.has("orgId")) params.set("orgId", orgId);
  const response = await fetch(`${API}/${resource}?${params}`, {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json", [CSRF]: csrfToken },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return envelope(response);
}

export async function data(resource, action, body, query) {
  return (await call(resource, action, body, query)).data;
}

// Every page of a list action (pageSize 1000 each).
export async function all(resource, action, query = {}) {
  const rows = [];
  for (let pageNo = 1; ; pageNo += 1) {
    const answer = await call(resource, action, undefined, { ...query, pageNo, pageSize: 1000 });
    rows.push(...answer.data);
    const total = answer.pagination ? answer.pagination.totalSize : rows.length;
    if (rows.length >= total || answer.data.length === 0) return rows;
  }
}

const SESSION = "/console/session";

export async function signIn(accessKey, accessSecret) {
  const response = await fetch(SESSION, {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ accessKey, accessSecret }),
  });
  const session = (await envelope(response)).data;
  csrfToken = session.csrfToken;
  orgId = session.orgId;
  return session;
}

export async function whoami() {
  const response = await fetch(SESSION, { credentials: "same-origin" });
  if (response.status === 401) return null;
  const session = (await envelope(response)).data;
  csrfToken = session.csrfToken;
  orgId = session.orgId;
  return session;
}

export async function signOut() {
  await fetch(SESSION, { method: "DELETE", credentials: "same-origin", headers: { [CSRF]: csrfToken } });
  csrfToken = "";
  orgId = "";
}

export const STREAM = `${API}/stream`;
