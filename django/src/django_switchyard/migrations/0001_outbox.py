"""The PostgreSQL outbox (schema version 1): the tables, sequences, functions and triggers
of Switchyard's docs/outbox.md, installed by the same script a Switchyard node runs.

Safe in either order: the script is idempotent and serialised with a node's install by an
advisory lock, so migrating after a node created the outbox changes nothing, and a node
started after this migration finds version 1 and uses it. Nothing is done on other
databases (they publish over http). Reversing leaves the outbox in place: Switchyard's nodes
read it, and dropping it would lose events not yet delivered.
"""

from django.db import migrations

from django_switchyard import outbox


def install(apps, schema_editor):
    outbox.install(schema_editor)


class Migration(migrations.Migration):
    initial = True
    dependencies: list[tuple[str, str]] = []
    operations = [migrations.RunPython(install, migrations.RunPython.noop, elidable=False)]
