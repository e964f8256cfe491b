import uuid

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.db import models


class Product(models.Model):
    name = models.CharField(max_length=100)
    price = models.DecimalField(max_digits=8, decimal_places=2, default=0)
    secret_note = models.CharField(max_length=100, blank=True)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    code = models.UUIDField(default=uuid.uuid4)
    added = models.DateTimeField(auto_now_add=True)

    def __str__(self):
        return self.name


class Review(models.Model):
    """A model whose own to_dict() decides what its events carry."""

    product = models.ForeignKey(Product, on_delete=models.CASCADE)
    stars = models.PositiveSmallIntegerField()

    def to_dict(self):
        return {"product": self.product_id, "stars": self.stars, "summary": f"{self.stars}*"}


class Note(models.Model):
    """Declared with operations = [] in events.py: never published."""

    text = models.CharField(max_length=100)


class Member(AbstractBaseUser):
    """A custom user model (UUID key, email as the username, no staff flags), for the
    derived config's user columns. Not AUTH_USER_MODEL unless a test says so."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, db_column="member_uuid")
    email = models.EmailField(unique=True, db_column="mail")

    USERNAME_FIELD = "email"

    class Meta:
        db_table = "shop_members"
