"""A plain WSGI app for the gunicorn worker tests (tests/buffering_gunicorn.rs).

/upload reads its whole body, as a Django view reading request.body does; /big answers
32 MiB; anything else answers "ok". Under sync workers, each request holds one worker
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
    else:
        body = b"ok"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
