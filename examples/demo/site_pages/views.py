"""Views of the demo site.

Two of them are probes for Switchyard's integration tests rather than pages for people:
`/headers/` reports what Django saw of the request after the proxy's header rules, and
`/upload/` counts a request body without buffering it.
"""

import hashlib

from django.http import JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods, require_POST

UPLOAD_CHUNK_SIZE = 64 * 1024  # small enough to show streaming, big enough to be quick

# The request headers the proxy rewrites, as /headers/ reports them: JSON key -> META key.
PROBED_HEADERS = {
    "host": "HTTP_HOST",
    "remote_addr": "REMOTE_ADDR",
    "x_forwarded_for": "HTTP_X_FORWARDED_FOR",
    "x_forwarded_proto": "HTTP_X_FORWARDED_PROTO",
    "x_forwarded_host": "HTTP_X_FORWARDED_HOST",
    "cookie": "HTTP_COOKIE",
}
SWITCHYARD_META_PREFIX = "HTTP_X_SWITCHYARD_"


@require_GET
def home(request):
    return render(request, "site_pages/home.html")


@require_http_methods(["GET", "POST"])
def echo(request):
    """A form whose POST goes through Django's CSRF check, then shows what was posted."""
    posted = request.POST.get("message") if request.method == "POST" else None
    return render(request, "site_pages/echo.html", {"posted": posted})


@require_GET
def redirect_home(request):
    """A plain 302 with a relative Location, to see redirects pass through untouched."""
    return redirect("home")


@require_GET
def headers(request):
    """What Django saw: the proxy-relevant headers as JSON.

    Shape: {"host", "remote_addr", "x_forwarded_for", "x_forwarded_proto",
    "x_forwarded_host", "cookie"} each a string or null; "switchyard": every
    HTTP_X_SWITCHYARD_* META key and its value; "is_secure": request.is_secure();
    "get_host": request.get_host() (a host outside ALLOWED_HOSTS is a 400 before this);
    "user": the logged-in username or null.
    """
    body = {key: request.META.get(meta) for key, meta in PROBED_HEADERS.items()}
    body["switchyard"] = {
        key: value
        for key, value in sorted(request.META.items())
        if key.startswith(SWITCHYARD_META_PREFIX)
    }
    body["is_secure"] = request.is_secure()
    body["get_host"] = request.get_host()
    body["user"] = request.user.get_username() if request.user.is_authenticated else None
    return JsonResponse(body)


@csrf_exempt
@require_POST
def upload(request):
    """Read the body in chunks and answer {"bytes": N, "sha256": hex}; nothing is kept."""
    stream = _body_stream(request)
    digest = hashlib.sha256()
    size = 0
    for chunk in iter(lambda: stream.read(UPLOAD_CHUNK_SIZE), b""):
        size += len(chunk)
        digest.update(chunk)
    return JsonResponse({"bytes": size, "sha256": digest.hexdigest()})


def _body_stream(request):
    """The request body as a file-like object.

    Django limits its stream to CONTENT_LENGTH and so reads a chunked body as empty.
    When there is no length but the server marks wsgi.input as terminated at the end of
    the body (gunicorn does), read that instead so chunked uploads are counted too.
    """
    if not request.META.get("CONTENT_LENGTH") and request.META.get("wsgi.input_terminated"):
        return request.META["wsgi.input"]
    return request
