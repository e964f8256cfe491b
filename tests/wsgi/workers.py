"""A plain WSGI app for the tests with a real gunicorn (tests/buffering_gunicorn.rs,
tests/request_ids.rs).

/upload reads its whole body, as a Django view reading request.body does; /big answers
32 MiB; /request-id answers the X-Request-Id it was sent (request.META["HTTP_X_REQUEST_ID"]
in Django); anything else answers "ok". Under sync workers, each request holds one worker
until its body is read and its answer written.
"""

BIG = b"x" * (32 << 20)


def application(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    if path == "/upload":
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = b"read %d bytes" % len(environ["wsgi.input"].read(length))
    elif path == "/big":
        body = BIG
    elif path == "/request-id":
        body = environ.get("HTTP_X_REQUEST_ID", "").encode()
    else:
        body = b"ok"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
