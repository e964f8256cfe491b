"""The Switchyard demo project: a small Django site served by gunicorn behind Switchyard."""
