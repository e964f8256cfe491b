from django.db import transaction
from django.http import HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

import django_switchyard as switchyard
from django_switchyard.views import CommandView, command_view
from django_switchyard.websocket import accept_websocket, require_websocket

from .models import Note, Product


@command_view
def rename(request):
    args = request.switchyard.args
    if not isinstance(args, dict) or not isinstance(args.get("name"), str):
        raise switchyard.CommandError("bad_args", "give a 'name'")
    return switchyard.CommandResponse({"name": args["name"]}, state={"name": args["name"]})


class Total(CommandView):
    def command(self, request, args):
        return {"total": sum(p.price for p in Product.objects.all())}


def products(request):
    position = switchyard.position("model:shop.Product")
    names = ", ".join(p.name for p in Product.objects.all())
    from django.template import Context, Template

    page = Template("{% load switchyard %}{% switchyard_client %}{% switchyard_position pos %}<p>{{ names }}</p>")
    return HttpResponse(page.render(Context({"pos": position, "names": names})))


class _RolledBack(Exception):
    pass


@csrf_exempt
@require_POST
def rolled_back(request):
    """Creates a product and publishes inside a transaction that rolls back, then
    publishes `after-rollback` for real: a socket sees only the second."""
    try:
        with transaction.atomic():
            Product.objects.create(name="ghost")
            switchyard.publish("model:shop.Product", "ghost", {"seen": "never"})
            raise _RolledBack
    except _RolledBack:
        pass
    switchyard.publish("model:shop.Product", "after-rollback", {"ghosts": Product.objects.filter(name="ghost").count()})
    return HttpResponse("rolled back")


@csrf_exempt
@require_POST
def outbox_tour(request):
    """Every publishing call in one transaction, a rolled-back savepoint among them, then
    one more on its own: a socket of this user subscribed to the product channel sees
    first, notice, everyone, big (100 KB), last, in that order, and no ghost. The Note
    written in the same transaction shows which transaction wrote the rows."""
    channel = "model:shop.Product"
    with transaction.atomic():
        Note.objects.create(text="outbox tour")
        switchyard.publish(channel, "first", {"n": 1})
        switchyard.send_to_user(request.user, "notice", {"to": request.user.get_username()})
        switchyard.broadcast("everyone", {"n": 3})
        try:
            with transaction.atomic():
                switchyard.publish(channel, "ghost", {"seen": "never"})
                raise _RolledBack
        except _RolledBack:
            pass
        switchyard.publish(channel, "big", {"text": "x" * 100_000})
    switchyard.publish(channel, "last", {"n": 5})
    return HttpResponse("published")


@csrf_exempt
@require_POST
def disconnect_me(request):
    switchyard.disconnect(user=request.user)
    return HttpResponse("disconnected")


@accept_websocket
def live_echo(request):
    """Plain HTTP: a page. A socket's message: a greeting sent first, then the message
    upper-cased as the reply; the state counts the messages."""
    if not request.is_websocket():
        return HttpResponse("plain page")
    websocket = request.websocket
    websocket.state["seen"] = websocket.state.get("seen", 0) + 1
    who = request.user.get_username() if request.user.is_authenticated else "anonymous"
    websocket.send({"hello": who, "seen": websocket.state["seen"]})
    return HttpResponse(websocket.message.upper())


@require_websocket
def live_only(request, room):
    return HttpResponse(f"{room}: {request.websocket.message}")
