"""A WSGI service on Python's standard-library server (wsgiref), for process_test.go.

wsgiref files request headers as CGI does: HTTP_ + the name upper-cased with '-' turned into
'_', so X-Tokengate-Roles and X_Tokengate_Roles land on the same key, their values
comma-joined. Every request is answered with the HTTP_* part of its environ, as JSON.

    python3 wsgi_upstream.py      # prints "listening on 127.0.0.1:PORT", then serves
"""

import json
from wsgiref.simple_server import WSGIRequestHandler, make_server


def app(environ, start_response):
    body = json.dumps({k: v for k, v in environ.items() if k.startswith("HTTP_")}).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


class Quiet(WSGIRequestHandler):
    def log_message(self, *args):
        pass


if __name__ == "__main__":
    server = make_server("127.0.0.1", 0, app, handler_class=Quiet)
    print("listening on 127.0.0.1:%d" % server.server_address[1], flush=True)
    server.serve_forever()
