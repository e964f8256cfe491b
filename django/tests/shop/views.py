from django.db import transaction
from django.http import HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

import django_switchyard as switchyard
from django_switchyard.views import CommandView, command_view

from .models import Product


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
