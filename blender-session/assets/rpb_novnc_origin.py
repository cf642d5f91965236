"""websockify auth plugin: admits a WebSocket only from a page served by the tunnel.

session.sh starts websockify with `--auth-plugin rpb_novnc_origin.LoopbackOrigin` and this
file's folder on PYTHONPATH. websockify calls `authenticate` for WebSocket upgrades only (not
for the noVNC page itself, since `--web-auth` is off), so plain HTTP probes are unaffected.

Why: websockify on the pod is reached through the user's SSH tunnel at 127.0.0.1:PORT on the
user's machine. A web page from anywhere else, open in the user's browser, could otherwise open
a WebSocket to that port and drive the desktop; browsers send that page's Origin. The local
port is picked on the user's machine (0 = any free one, and `rpb tunnel up` may pick another
later), so the pod cannot know it: any port of a loopback origin is admitted.

- `RPB_NOVNC_ORIGINS` (space-separated exact origins), when set and not empty, replaces the
  loopback rule, for users who want one fixed origin.
- A request without Origin is refused: every browser sends one on a WebSocket handshake, so a
  missing one is a non-browser client, which could put any Origin it likes anyway; nothing of
  rpb's opens the WebSocket without a browser (its probes only GET vnc.html), and refusing
  costs nothing. Such clients are limited by the tunnel itself (own user only).
"""

import os
import re

from websockify.auth_plugins import InvalidOriginError

# http://127.0.0.1, localhost or [::1], with an optional port: the page noVNC runs in when it
# is opened through the tunnel. The tunnel serves plain HTTP, so no https.
LOOPBACK = re.compile(r"\Ahttp://(127\.0\.0\.1|localhost|\[::1\])(:[0-9]{1,5})?\Z")


def allowed(origin, exact):
    """Whether `origin` (the header value, or None) may open a WebSocket."""
    if origin is None:
        return False
    if exact:
        return origin in exact
    return LOOPBACK.match(origin) is not None


class LoopbackOrigin:
    """The plugin class websockify instantiates with `--auth-source` (unused)."""

    def __init__(self, src=None):
        self.exact = os.environ.get("RPB_NOVNC_ORIGINS", "").split()

    def authenticate(self, headers, target_host, target_port):
        origin = headers.get("Origin")
        if not allowed(origin, self.exact):
            # 403, and websockify logs the expected and the actual origin.
            raise InvalidOriginError(expected=self.exact or [LOOPBACK.pattern], actual=origin)
