from django.db import models


class HookCall(models.Model):
    """One call of a hook or of the authorize view, kept so tests can check exactly-once
    (hooks) and that answers are cached (authorize)."""

    class Kind(models.TextChoices):
        CONNECT = "connect"
        DISCONNECT = "disconnect"
        AUTHORIZE = "authorize"

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
