"""`pip install ./django` gives a working, typed package whose import does nothing.

Builds a real wheel (once per scripts/test run: SWITCHYARD_TEST_PACKAGING=1).
"""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

APP = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(
    os.environ.get("SWITCHYARD_TEST_PACKAGING") != "1", reason="builds a wheel: once per run (SWITCHYARD_TEST_PACKAGING=1)"
)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--disable-pip-version-check", "-w", out, APP],
        check=True,
    )
    [built] = out.glob("django_switchyard-*.whl")
    return built


def test_the_wheel_holds_the_package_its_templates_tags_and_type_marker(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in [
        "django_switchyard/__init__.py",
        "django_switchyard/py.typed",
        "django_switchyard/templatetags/switchyard.py",
        "django_switchyard/urls.py",
        "django_switchyard/migrations/0001_outbox.py",
        "django_switchyard/sql/outbox_v1_install.sql",
    ]:
        assert needed in names
    assert not any(name.startswith(("tests/", "project/", "shop/")) for name in names)


def test_the_installed_package_imports_without_settings_and_without_side_effects(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--disable-pip-version-check", "--target", target, wheel],
        check=True,
    )
    probe = (
        # Reading an unconfigured setting raises, so a clean import proves none was read.
        "import sys, threading, django_switchyard as s;"
        "assert s.__file__.startswith(sys.argv[1]), s.__file__;"
        "from django.conf import settings;"
        "assert not settings.configured;"
        "assert threading.active_count() == 1;"
        "print(','.join(sorted(n for n in s.__all__)))"
    )
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env["PYTHONPATH"] = str(target)
    done = subprocess.run(
        [sys.executable, "-c", probe, str(target)], env=env, capture_output=True, text=True, check=True, cwd=tmp_path
    )
    exported = done.stdout.strip().split(",")
    for name in ["publish", "send_to_user", "broadcast", "disconnect", "position", "command", "CommandResponse"]:
        assert name in exported
