# A plain WSGI app under gunicorn's default (sync) workers.
BODY = b"Hello from gunicorn.\n" * 26

def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(BODY)))])
    return [BODY]
