#!/usr/bin/env python
"""manage.py of the Channels yardstick for scripts/bench-ws."""

import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "echo_site.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
