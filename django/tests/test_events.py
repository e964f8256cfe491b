"""ModelEvents: saves and deletes through the ORM (and the admin) become channel events."""

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction

from django_switchyard import testing
from django_switchyard.events import ModelEvents, declared
from shop.models import Note, Product, Review

pytestmark = pytest.mark.django_db(transaction=True)


def seen():
    return [(e.channel, e.event, e.data) for e in testing.outbox]


def test_a_create_is_published_on_the_model_channel(memory):
    product = Product.objects.create(name="kettle", price="9.90")
    [(channel, event, data)] = seen()
    assert (channel, event) == ("model:shop.Product", "created")
    assert data["id"] == product.pk
    assert data["name"] == "kettle"
    assert data["price"] == "9.90"
    assert data["code"] == str(product.code)
    assert data["owner"] is None
    assert data["added"].endswith("Z")


def test_excluded_fields_are_not_sent(memory):
    Product.objects.create(name="kettle", secret_note="margin 80%")
    assert "secret_note" not in seen()[0][2]


def test_event_data_carries_the_models_name_in_meta(memory):
    Product.objects.create(name="kettle")
    Review.objects.create(product=Product.objects.get(), stars=4)
    assert seen()[0][2]["_meta"] == {"model": "shop.Product", "verbose_name": "product"}
    assert seen()[1][2]["_meta"] == {"model": "shop.review", "verbose_name": "product review"}


def test_create_update_delete_arrive_in_order(memory):
    product = Product.objects.create(name="a")
    product.name = "b"
    product.save()
    pk = product.pk
    product.delete()
    assert [(e, d["name"], d["id"]) for _, e, d in seen()] == [
        ("created", "a", pk),
        ("updated", "b", pk),
        ("deleted", "b", pk),
    ]


def test_rolled_back_work_is_never_published(memory):
    with pytest.raises(RuntimeError):
        with transaction.atomic():
            Product.objects.create(name="ghost")
            raise RuntimeError
    assert seen() == []


def test_channels_may_route_an_instance_to_its_owner_too(memory):
    owner = User.objects.create_user("owner")
    Product.objects.create(name="kettle", owner=owner)
    assert [c for c, _, _ in seen()] == ["model:shop.Product", f"user:{owner.pk}"]


def test_a_models_to_dict_wins_and_the_pk_is_added(memory):
    product = Product.objects.create(name="kettle")
    testing.clear()
    review = Review.objects.create(product=product, stars=5)
    assert seen() == [
        (
            "model:shop.review",
            "created",
            {"product": product.pk, "stars": 5, "summary": "5*", "id": review.pk, "_meta": seen()[0][2]["_meta"]},
        )
    ]


def test_operations_not_listed_are_not_published(memory):
    product = Product.objects.create(name="kettle")
    review = Review.objects.create(product=product, stars=5)
    testing.clear()
    review.stars = 1
    review.save()
    assert seen() == []
    review.delete()
    assert [e for _, e, _ in seen()] == ["deleted"]


def test_empty_operations_publish_nothing(memory):
    Note.objects.create(text="x").delete()
    assert seen() == []


def test_queryset_update_and_bulk_create_publish_nothing(memory):
    Product.objects.bulk_create([Product(name="a"), Product(name="b")])
    Product.objects.update(name="c")
    assert seen() == []


def test_a_class_without_a_model_is_refused():
    with pytest.raises(ImproperlyConfigured, match="must set `model`"):

        class Broken(ModelEvents):
            pass


def test_an_abstract_base_needs_no_model():
    class Base(ModelEvents):
        abstract = True

    assert Base not in declared()


def test_a_field_the_model_lacks_is_refused():
    with pytest.raises(ImproperlyConfigured, match="no field colour"):

        class Broken(ModelEvents):
            model = Note
            name = "shop.broken"
            fields = ["colour"]


def test_an_unknown_operation_is_refused():
    with pytest.raises(ImproperlyConfigured, match="unknown operations"):

        class Broken(ModelEvents):
            model = Note
            name = "shop.broken2"
            operations = ["upsert"]


def test_the_same_name_declared_twice_is_refused():
    with pytest.raises(ImproperlyConfigured, match="declared twice"):

        class Again(ModelEvents):
            model = Note


def test_autodiscovery_found_the_projects_events():
    assert [c.event_name() for c in declared()] == ["shop.Note", "shop.Product", "shop.review"]


def test_admin_changes_are_published(memory, client):
    admin = User.objects.create_superuser("root", password="pw")
    client.force_login(admin)
    response = client.post("/admin/shop/product/add/", {"name": "via admin", "price": "1.00", "code": "6f1e0e8e-7a1c-4b1a-9d5e-1b2c3d4e5f60", "secret_note": ""})
    assert response.status_code == 302, response.content[:500]
    pk = Product.objects.get().pk
    client.post(f"/admin/shop/product/{pk}/change/", {"name": "renamed", "price": "2.00", "code": "6f1e0e8e-7a1c-4b1a-9d5e-1b2c3d4e5f60", "secret_note": ""})
    client.post(f"/admin/shop/product/{pk}/delete/", {"post": "yes"})
    assert [(e, d["name"]) for _, e, d in seen() if _ == "model:shop.Product"] == [
        ("created", "via admin"),
        ("updated", "renamed"),
        ("deleted", "renamed"),
    ]
