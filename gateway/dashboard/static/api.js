// The public API, called like any client: Authorization: Bearer <key>.

const KEY = 'atrium.apiKey';

export const keyStore = {
  get: () => { try { return localStorage.getItem(KEY) || ''; } catch { return ''; } },
  set: (k) => { try { localStorage.setItem(KEY, k); } catch { /* private mode: keep it for this page only */ } },
  clear: () => { try { localStorage.removeItem(KEY); } catch { /* nothing kept */ } },
};

// ApiError is an answer that was not 2xx (status 0: no answer at all). title and
// detail come from the problem+json body when there is one.
export class ApiError extends Error {
  constructor(status, title, detail, retryAfter) {
    super(detail || title);
    this.status = status;
    this.title = title;
    this.detail = detail;
    this.retryAfter = retryAfter;
  }

  // explain says what went wrong in words for the page.
  explain(what) {
    switch (this.status) {
      case 0: return `The gateway did not answer (${what}). Retrying…`;
      case 401: return 'The API key was refused.';
      case 403: return `This API key may not do that (${what}): ${this.detail || 'missing scope'}.`;
      case 404: return `${what}: not found.`;
      case 429: return `Too many requests; waiting ${this.retryAfter || 'a few'} s.`;
      case 502: case 503: case 504: return `${what} is not available right now (${this.status}).`;
      default: return `${what}: ${this.detail || this.title || 'error ' + this.status}.`;
    }
  }
}

export function makeApi(getKey) {
  async function request(method, path, body, signal) {
    const headers = { Accept: 'application/json', Authorization: 'Bearer ' + getKey() };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    let resp;
    try {
      resp = await fetch(path, {
        method, headers, signal, cache: 'no-store', credentials: 'omit',
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (e) {
      if (e.name === 'AbortError') throw e;
      throw new ApiError(0, 'Network error', '');
    }
    const ctype = resp.headers.get('Content-Type') || '';
    const data = ctype.includes('json') ? await resp.json().catch(() => null) : null;
    if (!resp.ok) {
      throw new ApiError(resp.status, (data && data.title) || resp.statusText, (data && data.detail) || '', resp.headers.get('Retry-After'));
    }
    return data;
  }
  return {
    get: (path, signal) => request('GET', path, undefined, signal),
    post: (path, body) => request('POST', path, body),
  };
}

// qs builds a query string from the defined values of params.
export function qs(params) {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') p.set(k, v);
  const s = p.toString();
  return s ? '?' + s : '';
}
