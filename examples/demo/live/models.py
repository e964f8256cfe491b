from django.db import models


class HookCall(models.Model):
    """One call of a connect or disconnect hook, kept so tests can check exactly-once."""

    class Kind(models.TextChoices):
        CONNECT = "connect"
        DISCONNECT = "disconnect"

    kind = models.CharField(max_length=16, choices=Kind.choices)
    connection = models.CharField(max_length=64, db_index=True)
    user_id = models.CharField(max_length=64, null=True, blank=True)
    seq = models.BigIntegerField(null=True, blank=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self):
        return f"{self.kind} {self.connection} seq={self.seq}"

    def as_json(self):
        return {
            "kind": self.kind,
            "connection": self.connection,
            "user": self.user_id,
            "seq": self.seq,
            "at": self.created.isoformat(),
        }
