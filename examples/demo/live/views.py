"""The /live/ page and the hook log that Switchyard's tests read."""

from django.http import JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from .models import HookCall


@require_GET
def live(request):
    """A page whose script opens a socket on /ws/ and runs commands on it."""
    return render(request, "live/live.html")


@require_GET
def hook_log(request):
    """GET /ws/hooks/log/?connection=<id>: that connection's hook calls, oldest first.

    Shape: {"calls": [{"kind", "connection", "user", "seq", "at"}]}. A test probe like
    /headers/: it reveals only what a caller who knows the connection id already has.
    """
    connection = request.GET.get("connection")
    if not connection:
        return JsonResponse(
            {"error": {"code": "bad_request", "message": "give ?connection=<id>"}}, status=400
        )
    calls = HookCall.objects.filter(connection=connection)
    return JsonResponse({"calls": [call.as_json() for call in calls]})
