# The simplest Python web app there is, in HTTP/1.1 mode (keep-alive): the standard
# library's server writes each response's head and body separately, Nagle's algorithm on.
import os, http.server

BODY = b"Hello from the standard library.\n" * 16

class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)

    def log_message(self, *args):
        pass

print(f"dyno listening on {os.environ['PORT']}", flush=True)
http.server.ThreadingHTTPServer(("", int(os.environ["PORT"])), Handler).serve_forever()
