from django.http import HttpResponse

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
