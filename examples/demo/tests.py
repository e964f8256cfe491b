"""One check per view of the demo site, with Django's test client (`manage.py test`).

The proxy's behaviour is tested from Rust against a real gunicorn; these only make sure
the pages themselves do what the Rust tests rely on.
"""

import hashlib
import io
import json

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client, RequestFactory, TestCase

from site_pages.views import upload

USERNAME, PASSWORD = "demo", "demo-password"


class DemoUserMixin:
    @classmethod
    def setUpTestData(cls):
        call_command("ensure_demo_user", stdout=io.StringIO())


class HomeTests(DemoUserMixin, TestCase):
    def test_home_says_not_logged_in_to_anonymous(self):
        response = self.client.get("/")
        self.assertContains(response, "You are not logged in")

    def test_home_names_the_logged_in_user(self):
        self.client.login(username=USERNAME, password=PASSWORD)
        response = self.client.get("/")
        self.assertContains(response, "You are logged in as <strong>demo</strong>")


class EchoTests(TestCase):
    def setUp(self):
        self.client = Client(enforce_csrf_checks=True)

    def test_echo_post_without_csrf_token_is_403(self):
        response = self.client.post("/echo/", {"message": "hi"})
        self.assertEqual(response.status_code, 403)

    def test_echo_post_with_csrf_token_shows_the_escaped_message(self):
        form = self.client.get("/echo/")
        token = form.cookies[settings.CSRF_COOKIE_NAME].value
        response = self.client.post(
            "/echo/", {"message": "<b>hi</b>", "csrfmiddlewaretoken": token}
        )
        self.assertContains(response, "CSRF check passed")
        self.assertContains(response, "&lt;b&gt;hi&lt;/b&gt;")


class LoginLogoutTests(DemoUserMixin, TestCase):
    def test_login_sets_the_session_cookie_and_redirects_to_the_workspace(self):
        response = self.client.post(
            "/accounts/login/", {"username": USERNAME, "password": PASSWORD}
        )
        self.assertRedirects(response, "/workspace/")
        self.assertIn(settings.SESSION_COOKIE_NAME, response.cookies)
        self.assertEqual(settings.SESSION_COOKIE_NAME, "sessionid")

    def test_login_with_a_wrong_password_shows_an_error(self):
        response = self.client.post("/accounts/login/", {"username": USERNAME, "password": "nope"})
        self.assertContains(response, "did not match")

    def test_logout_ends_the_session(self):
        self.client.login(username=USERNAME, password=PASSWORD)
        response = self.client.post("/accounts/logout/")
        self.assertRedirects(response, "/")
        self.assertContains(self.client.get("/"), "You are not logged in")


class RedirectTests(TestCase):
    def test_redirect_is_a_302_to_home(self):
        response = self.client.get("/redirect/")
        self.assertEqual(response.status_code, 302)
        self.assertEqual(response["Location"], "/")


class HeadersTests(DemoUserMixin, TestCase):
    def test_headers_reports_forwarded_headers_and_switchyard_keys(self):
        self.client.cookies["probe"] = "1"
        response = self.client.get(
            "/headers/",
            headers={
                "Host": "localhost:8080",
                "X-Forwarded-For": "203.0.113.7",
                "X-Forwarded-Proto": "https",
                "X-Forwarded-Host": "localhost:8443",
                "X-Switchyard-Test": "yes",
            },
        )
        body = response.json()
        self.assertEqual(body["host"], "localhost:8080")
        self.assertEqual(body["remote_addr"], "127.0.0.1")
        self.assertEqual(body["x_forwarded_for"], "203.0.113.7")
        self.assertEqual(body["x_forwarded_proto"], "https")
        self.assertEqual(body["x_forwarded_host"], "localhost:8443")
        self.assertIn("probe=1", body["cookie"])
        self.assertEqual(body["switchyard"], {"HTTP_X_SWITCHYARD_TEST": "yes"})
        self.assertIs(body["is_secure"], True)
        self.assertEqual(body["get_host"], "localhost:8443")
        self.assertIsNone(body["user"])

    def test_headers_without_proxy_headers_is_plain_http(self):
        body = self.client.get("/headers/").json()
        self.assertIsNone(body["x_forwarded_proto"])
        self.assertIs(body["is_secure"], False)
        self.assertEqual(body["switchyard"], {})

    def test_headers_refuses_a_forwarded_host_outside_allowed_hosts(self):
        response = self.client.get("/headers/", headers={"X-Forwarded-Host": "evil.example"})
        self.assertEqual(response.status_code, 400)

    def test_headers_names_the_logged_in_user(self):
        self.client.login(username=USERNAME, password=PASSWORD)
        self.assertEqual(self.client.get("/headers/").json()["user"], USERNAME)


class UploadTests(TestCase):
    def test_upload_counts_the_body(self):
        data = bytes(range(256)) * 1000
        response = Client(enforce_csrf_checks=True).post(
            "/upload/", data, content_type="application/octet-stream"
        )
        expected = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        self.assertEqual(response.json(), expected)

    def test_upload_counts_a_body_without_content_length(self):
        # What gunicorn hands Django for a chunked request: no CONTENT_LENGTH, and a
        # wsgi.input that ends where the body ends.
        data = b"x" * 100_000
        request = RequestFactory().generic("POST", "/upload/", data)
        del request.META["CONTENT_LENGTH"]
        request.META["wsgi.input"] = io.BytesIO(data)
        request.META["wsgi.input_terminated"] = True
        body = json.loads(upload(request).content)
        self.assertEqual(body, {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()})

    def test_upload_refuses_get(self):
        self.assertEqual(self.client.get("/upload/").status_code, 405)


class EnsureDemoUserTests(TestCase):
    def test_ensure_demo_user_is_idempotent(self):
        call_command("ensure_demo_user", stdout=io.StringIO())
        password_hash = get_user_model().objects.get(username=USERNAME).password
        out = io.StringIO()
        call_command("ensure_demo_user", stdout=out)
        self.assertIn("already exists", out.getvalue())
        user = get_user_model().objects.get(username=USERNAME)
        self.assertEqual(user.password, password_hash)
        self.assertTrue(user.check_password(PASSWORD))
