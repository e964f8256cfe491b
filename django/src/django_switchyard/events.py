"""Model events, class based: declare once, and saves and deletes are published.

In an app's `events.py` (imported by django-switchyard's `ready()`, like `admin.py`):

    from django_switchyard.events import ModelEvents
    from .models import Order

    class OrderEvents(ModelEvents):
        model = Order
        fields = ["id", "status", "total"]      # None (default): every concrete field
        exclude = ["internal_note"]
        operations = ["create", "update"]       # default: create, update, delete
        subscribe = "staff"                     # who may subscribe to model:shop.Order

        def channels(self, instance):
            # Also tell the owner, on a channel only they may subscribe to.
            return [self.channel, f"user:{instance.owner_id}"]

An `Order` saved or deleted through the ORM publishes `created`, `updated` or `deleted`
on channel `model:<name>` (`name` defaults to `app_label.ModelName`), data a flat object
of the fields with the primary key always included, plus `_meta` (`model`,
`verbose_name`), once the transaction commits.
A model's own `to_dict()` wins over `fields` / `exclude`. Who may subscribe is decided by
channel rules in Switchyard (the derived config writes one per class from `subscribe`),
never by client filters: route private instances to private channels with `channels()`.

Not published, as with every signal-based tool: `QuerySet.update()`, `bulk_create()`,
`bulk_update()`, `QuerySet.delete()` of rows never loaded as instances (Django sends
delete signals only for what it collects), raw SQL, and changes made outside Django.
"""

from __future__ import annotations

import base64
import datetime
import decimal
import uuid
from collections.abc import Iterable
from typing import Any, ClassVar

from django.core.exceptions import ImproperlyConfigured
from django.db import models
from django.db.models.fields.files import FieldFile
from django.db.models.signals import post_delete, post_save

from . import publishing

OPERATIONS = ("create", "update", "delete")
EVENT_NAMES = {"create": "created", "update": "updated", "delete": "deleted"}
SUBSCRIBE_RULES = ("nobody", "anyone", "authenticated", "staff", "superuser", "backend")
CHANNEL_PREFIX = "model:"
# Where an event's metadata travels inside its data. No model field can be called this:
# it would hide the model's own `_meta`.
META_KEY = "_meta"

_registry: dict[str, type[ModelEvents]] = {}


class ModelEvents:
    """Publishes a model's creates, updates and deletes; subclass it with `model` set.

    model         the model class (required)
    fields        names of the fields to send; None means every concrete field
    exclude       names to leave out
    operations    which of "create", "update", "delete" publish (empty: none)
    name          the channel's name after "model:"; default "app_label.ModelName"
    verbose_name  the model's name for people, sent in each event's `_meta`
    subscribe     who may subscribe to the model's channel (a channel rule's
                  vocabulary: nobody, anyone, authenticated, staff, superuser, backend);
                  default "staff", because a model's rows are rarely public
    abstract      True on an intermediate base class that declares no model
    """

    model: ClassVar[type[models.Model] | None] = None
    fields: ClassVar[Iterable[str] | None] = None
    exclude: ClassVar[Iterable[str]] = ()
    operations: ClassVar[Iterable[str]] = OPERATIONS
    name: ClassVar[str | None] = None
    verbose_name: ClassVar[str | None] = None
    subscribe: ClassVar[str] = "staff"
    abstract: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("abstract", False):
            return
        if cls.model is None or not (isinstance(cls.model, type) and issubclass(cls.model, models.Model)):
            raise ImproperlyConfigured(f"{cls.__qualname__} must set `model` to a model class (or `abstract = True`)")
        cls._validate()
        cls._connect()

    # === declaration ===

    @classmethod
    def event_name(cls) -> str:
        """The channel name after "model:" (the `name` attribute or `app_label.ModelName`)."""
        assert cls.model is not None
        return cls.name or f"{cls.model._meta.app_label}.{cls.model.__name__}"

    @classmethod
    def default_channel(cls) -> str:
        """`model:<name>`, the channel every event goes to unless `channels()` says otherwise."""
        return CHANNEL_PREFIX + cls.event_name()

    @property
    def channel(self) -> str:
        return self.default_channel()

    @classmethod
    def _validate(cls) -> None:
        assert cls.model is not None
        known = {f.name for f in cls.model._meta.concrete_fields}
        named = [*(cls.fields or ()), *cls.exclude]
        unknown = sorted(set(named) - known)
        if unknown:
            raise ImproperlyConfigured(f"{cls.__qualname__}: {cls.model.__name__} has no field {', '.join(unknown)}")
        bad = sorted(set(cls.operations) - set(OPERATIONS))
        if bad:
            raise ImproperlyConfigured(f"{cls.__qualname__}: unknown operations {bad}; use {', '.join(OPERATIONS)}")
        if cls.subscribe not in SUBSCRIBE_RULES:
            raise ImproperlyConfigured(f"{cls.__qualname__}: subscribe must be one of {', '.join(SUBSCRIBE_RULES)}")
        name = cls.event_name()
        if name in _registry and _registry[name].__qualname__ != cls.__qualname__:
            raise ImproperlyConfigured(f"{cls.__qualname__}: model events {name!r} are declared twice")

    @classmethod
    def _connect(cls) -> None:
        assert cls.model is not None
        name = cls.event_name()
        _registry[name] = cls
        uid = f"django_switchyard.events:{name}"
        # weak=False: the receivers are bound to this class, which nothing else holds.
        post_save.connect(cls._saved, sender=cls.model, weak=False, dispatch_uid=uid)
        post_delete.connect(cls._deleted, sender=cls.model, weak=False, dispatch_uid=uid)

    # === what is sent ===

    def channels(self, instance: models.Model) -> Iterable[str]:
        """The channels `instance`'s events go to; default `[self.channel]`."""
        return [self.channel]

    def to_data(self, instance: models.Model) -> dict[str, Any]:
        """The event's data: `instance.to_dict()` when the model has one, else the fields."""
        to_dict = getattr(instance, "to_dict", None)
        if callable(to_dict):
            data = dict(to_dict())
        else:
            data = {field.name: _value(field, instance) for field in self._fields()}
        pk = instance._meta.pk
        assert pk is not None
        data.setdefault(pk.name, _value(pk, instance))
        return data

    def meta(self) -> dict[str, Any]:
        """What each event says about itself: the model and its name for people."""
        assert self.model is not None
        verbose = self.verbose_name or str(self.model._meta.verbose_name)
        return {"model": self.event_name(), "verbose_name": verbose}

    def _fields(self) -> list[models.Field[Any, Any]]:
        assert self.model is not None
        wanted = set(self.fields) if self.fields is not None else None
        excluded = set(self.exclude)
        return [
            f
            for f in self.model._meta.concrete_fields
            if (wanted is None or f.name in wanted) and f.name not in excluded
        ]

    def send(self, operation: str, instance: models.Model, using: str | None) -> None:
        """Publish `operation` ("create", "update", "delete") of `instance` on commit."""
        if operation not in set(self.operations):
            return
        data = {**self.to_data(instance), META_KEY: self.meta()}
        event = EVENT_NAMES[operation]
        for channel in dict.fromkeys(self.channels(instance)):
            publishing.publish(channel, event, data, using=using)

    # === signal receivers ===

    @classmethod
    def _saved(cls, sender: Any, instance: models.Model, created: bool, raw: bool = False, **kwargs: Any) -> None:
        if raw:
            return  # loaddata: fixtures are not events
        cls().send("create" if created else "update", instance, kwargs.get("using"))

    @classmethod
    def _deleted(cls, sender: Any, instance: models.Model, **kwargs: Any) -> None:
        cls().send("delete", instance, kwargs.get("using"))


def declared() -> list[type[ModelEvents]]:
    """Every ModelEvents class, by name (for the derived config and checks)."""
    return [_registry[name] for name in sorted(_registry)]


def _value(field: models.Field[Any, Any], instance: models.Model) -> Any:
    """A field's value as JSON can carry it (DjangoJSONEncoder does dates, decimals, UUIDs)."""
    value = field.value_from_object(instance)
    if isinstance(value, FieldFile):
        return value.name or None
    if isinstance(value, (bytes, memoryview)):
        return base64.b64encode(bytes(value)).decode()
    if isinstance(value, (str, int, float, bool, type(None), datetime.date, datetime.time, decimal.Decimal, uuid.UUID)):
        return value
    if isinstance(value, datetime.timedelta):
        return value
    if isinstance(value, (list, dict)):
        return value  # JSONField, ArrayField
    return str(value)
