from django_switchyard.events import ModelEvents

from .models import Note, Product, Review


class ProductEvents(ModelEvents):
    model = Product
    exclude = ["secret_note"]
    subscribe = "anyone"

    def channels(self, instance):
        channels = [self.channel]
        if instance.owner_id is not None:
            channels.append(f"user:{instance.owner_id}")
        return channels


class ReviewEvents(ModelEvents):
    model = Review
    name = "shop.review"
    verbose_name = "product review"
    operations = ["create", "delete"]


class NoteEvents(ModelEvents):
    model = Note
    operations = []
