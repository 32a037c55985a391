# A plain ASGI app under uvicorn (h11), head and body sent as two messages.
BODY = b"Hello from uvicorn.\n" * 27

async def app(scope, receive, send):
    assert scope["type"] == "http"
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(BODY)).encode())]})
    await send({"type": "http.response.body", "body": BODY})
