"""Which web origins may read the worker's answers from their own pages (CORS).

Who calls this: server.py, on every response under /streams/ and /api/ and
for preflight requests. Pure: the configured origins and the request's
Origin header in, response headers out.

The rule, from the settings' origin list (settings.HttpSettings.cors_origins):
- a listed origin gets itself back (`Access-Control-Allow-Origin: <origin>`,
  `Vary: Origin`), for anything;
- `*` in the list lets any origin read public resources (streams that ask
  no viewer for a token), as before;
- a protected resource (a stream with viewer auth, the admin surface behind
  a token) is never answered with `*`: only listed origins may read it from
  script, so a token that leaked into another site's page is not enough to
  pull video into that site.
No credentials mode (cookies) is ever allowed: tokens travel in the URL or
the Authorization header, which the page's own script sets.
"""

from __future__ import annotations

from collections.abc import Iterable

ANY = "*"
EXPOSE = "Content-Length, Content-Range, WWW-Authenticate"
PREFLIGHT = {
    "Access-Control-Allow-Methods": "GET, HEAD, OPTIONS",
    # Authorization must be named: a wildcard never covers it.
    "Access-Control-Allow-Headers": "Authorization, Range, If-None-Match, If-Modified-Since",
    "Access-Control-Max-Age": "600",
}


class CorsPolicy:
    def __init__(self, origins: Iterable[str], expose: str = EXPOSE) -> None:
        listed = tuple(origins)
        self._any = ANY in listed
        self._origins = frozenset(o for o in listed if o != ANY)
        self._expose = expose

    def allowed_origin(self, origin: str | None, *, protected: bool) -> str | None:
        """The Access-Control-Allow-Origin value for this request, or None for none."""
        if origin is not None and origin in self._origins:
            return origin
        if self._any and not protected:
            return ANY
        return None

    def headers(self, origin: str | None, *, protected: bool) -> dict[str, str]:
        allowed = self.allowed_origin(origin, protected=protected)
        if allowed is None:
            # Still vary: another origin's request may get an answer with CORS.
            return {"Vary": "Origin"} if self._origins else {}
        headers = {
            "Access-Control-Allow-Origin": allowed,
            "Access-Control-Expose-Headers": self._expose,
        }
        if allowed != ANY or self._origins:
            headers["Vary"] = "Origin"
        return headers

    def preflight(self, origin: str | None) -> dict[str, str]:
        """A preflight carries no data: it is answered for any origin the
        policy could ever allow; the real response then decides."""
        allowed = origin if origin in self._origins else (ANY if self._any else None)
        if allowed is None:
            return {}
        return {"Access-Control-Allow-Origin": allowed, **PREFLIGHT}
