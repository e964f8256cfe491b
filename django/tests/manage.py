#!/usr/bin/env python
"""The sample project's manage.py (the end-to-end tests run `switchyard run` through it)."""

import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
