"""The sample project's commands, found by autodiscovery (no URL per command)."""

import django_switchyard as switchyard

from .models import Product


@switchyard.command("shop.count")
def count(request, args):
    """Increment the connection's `count`: state round-trips through Switchyard."""
    n = request.switchyard.state.get("count", 0) + 1
    return switchyard.CommandResponse({"count": n}, state={**request.switchyard.state, "count": n})


@switchyard.command("shop.whoami")
def whoami(request, args):
    user = request.user.get_username() if request.user.is_authenticated else None
    return {"request_user": user, "payload_user": request.switchyard.user, "args": args}


@switchyard.command("shop.buy", auth="authenticated")
def buy(request, args):
    product = Product.objects.get(pk=args["product"])
    return switchyard.CommandResponse(
        {"bought": product.name},
        push=[{"user": str(request.user.pk), "event": "bought", "data": {"product": product.pk}}],
        subscribe=[f"product:{product.pk}"],
    )


@switchyard.command("shop.admin", auth="staff")
def admin_only(request, args):
    return "yes"


@switchyard.command("shop.fail")
def fail(request, args):
    raise switchyard.CommandError("out_of_stock", "none left", status=409)


@switchyard.hook("connect")
def on_connect(request):
    if request.switchyard.query.get("refuse") == "1":
        return switchyard.CommandResponse.refuse(4403, "refused by on_connect")
    return {"joined": True, "seq": request.switchyard.seq}


@switchyard.hook("disconnect")
def on_disconnect(request):
    return None


@switchyard.authorize("product:*")
def may_watch_product(request, channel):
    return request.user.is_authenticated and channel != "product:secret"
