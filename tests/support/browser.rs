//! A small browser stand-in for pages served through Switchyard: Host and Origin headers as
//! a browser sends them, CSRF tokens from forms, cookies from responses, and a login.

use std::net::SocketAddr;

use http::{header, Request, Response, StatusCode};
use hyper::body::Incoming;
use switchyard::body::Body;

use super::{bytes_body, client, read_body, url};

/// Sends requests to one Switchyard listener as a browser on that origin would.
#[derive(Clone, Copy, Debug)]
pub struct Browser {
    /// The listener.
    pub addr: SocketAddr,
}

impl Browser {
    /// `HOST:PORT` of the listener.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// Sends `request` with this origin's Host.
    pub async fn send(&self, request: http::request::Builder, body: Body) -> Response<Incoming> {
        let request = request.header(header::HOST, self.host()).body(body).unwrap();
        client().request(request).await.unwrap()
    }

    /// A GET to `path`.
    pub fn get(&self, path: &str) -> http::request::Builder {
        Request::get(url(self.addr, path))
    }

    /// A form POST to `path` from this origin.
    pub fn post(&self, path: &str) -> http::request::Builder {
        Request::post(url(self.addr, path))
            .header(header::ORIGIN, format!("http://{}", self.host()))
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
    }

    /// GETs a form page; returns the csrftoken cookie and the form's csrfmiddlewaretoken.
    pub async fn form_tokens(&self, path: &str) -> (String, String) {
        let response = self.send(self.get(path), bytes_body("")).await;
        assert_eq!(response.status(), StatusCode::OK);
        let cookie = set_cookie(&response, "csrftoken").expect("Django sets csrftoken");
        let html = String::from_utf8(read_body(response).await.to_vec()).unwrap();
        (cookie, hidden_input(&html, "csrfmiddlewaretoken"))
    }

    /// Logs in through Django's login form; returns the `Cookie` header value to send after.
    pub async fn login(&self, username: &str, password: &str) -> String {
        let (csrf, token) = self.form_tokens("/accounts/login/").await;
        let body = format!("username={username}&password={password}&csrfmiddlewaretoken={token}");
        let request = self.post("/accounts/login/").header(header::COOKIE, format!("csrftoken={csrf}"));
        let response = self.send(request, bytes_body(body)).await;
        assert_eq!(response.status(), StatusCode::FOUND, "login failed");
        let session = set_cookie(&response, "sessionid").expect("login sets sessionid");
        format!("csrftoken={csrf}; sessionid={session}")
    }

    /// Logs out the session in `cookie` through Django's logout view.
    pub async fn logout(&self, cookie: &str) {
        let csrf = cookie.split("; ").find_map(|c| c.strip_prefix("csrftoken=")).expect("a csrftoken cookie");
        let request = self.post("/accounts/logout/").header(header::COOKIE, cookie);
        let response = self.send(request, bytes_body(format!("csrfmiddlewaretoken={csrf}"))).await;
        assert!(response.status().is_success() || response.status().is_redirection(), "logout failed");
    }
}

/// The value of cookie `name` in the response's Set-Cookie headers.
pub fn set_cookie(response: &Response<Incoming>, name: &str) -> Option<String> {
    response.headers().get_all(header::SET_COOKIE).iter().find_map(|v| {
        let text = v.to_str().ok()?;
        let (pair, _) = text.split_once(';').unwrap_or((text, ""));
        let (key, value) = pair.split_once('=')?;
        (key.trim() == name).then(|| value.to_string())
    })
}

/// The value of `<input … name="NAME" value="…">` in a page.
pub fn hidden_input(html: &str, name: &str) -> String {
    let at = html.find(&format!("name=\"{name}\"")).expect("the form has the input");
    let rest = &html[at..];
    let value = rest.split("value=\"").nth(1).expect("the input has a value");
    value.split('"').next().unwrap().to_string()
}

/// A response body as JSON.
pub async fn json(response: Response<Incoming>) -> serde_json::Value {
    serde_json::from_slice(&read_body(response).await).unwrap()
}
