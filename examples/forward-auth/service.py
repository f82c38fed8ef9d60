"""A service behind nginx + tokengate-auth, in Python's standard library only.

It does no token work at all: nginx asks tokengate-auth about every request (auth_request),
and passes the verified identity in X-Tokengate-* headers, which nginx sets itself (a client
cannot forge them: proxy_set_header replaces whatever the client sent). The service must only
be reachable through nginx (listen on 127.0.0.1 or a private network).

    python3 service.py PORT
"""

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Orders(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/healthz":
            return self.reply(200, {"ok": True})
        identity = {
            "subject": self.headers.get("X-Tokengate-Subject", ""),
            "session": self.headers.get("X-Tokengate-Session", ""),
            "client": self.headers.get("X-Tokengate-Client", ""),
            "scope": self.headers.get("X-Tokengate-Scope", ""),
            "roles": [r for r in self.headers.get("X-Tokengate-Roles", "").split(",") if r],
        }
        self.reply(200, {"path": self.path, "identity": identity})

    def reply(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass  # one line per request would cost more than the request


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Orders)
    print("listening on 127.0.0.1:%d" % server.server_address[1], flush=True)
    server.serve_forever()
