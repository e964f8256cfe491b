//! What gunicorn's sync workers need from us, with a real 2-worker gunicorn: two browsers
//! that trickle an upload or never read a big answer must not hold both workers, so a
//! third visitor is served at once. (Without buffering the third waits until gunicorn's
//! 30 s worker timeout kills a stuck worker; the patience below is a third of that.)

mod support;

use std::time::Duration;

use support::gunicorn;
use support::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// How long the third visitor may wait: well under gunicorn's 30 s worker timeout.
const PATIENCE: Duration = Duration::from_secs(10);

/// The third visitor's plain GET; `ok` from the WSGI app when a worker was free.
async fn third_visitor(addr: std::net::SocketAddr) -> String {
    let request = client().get(url(addr, "/").parse().unwrap());
    let response = tokio::time::timeout(PATIENCE, request).await.expect("a worker was free for the third visitor");
    String::from_utf8(read_body(response.unwrap()).await.to_vec()).unwrap()
}

/// Reads from `stream` until `end` has arrived (or the stream ends); returns what came.
async fn read_until(stream: &mut TcpStream, end: &str) -> String {
    let mut answer = Vec::new();
    while !String::from_utf8_lossy(&answer).ends_with(end) {
        if tokio::io::AsyncReadExt::read_buf(stream, &mut answer).await.unwrap() == 0 {
            break;
        }
    }
    String::from_utf8_lossy(&answer).to_string()
}

#[tokio::test]
async fn trickling_uploads_do_not_hold_gunicorn_workers() {
    let gunicorn = gunicorn::start("workers", 2);
    let sy = start_switchyard(&minimal_config(&gunicorn.url, "")).await;
    let mut tricklers = Vec::new();
    for _ in 0..2 {
        let mut browser = TcpStream::connect(sy.plain_addrs[0]).await.unwrap();
        let head = "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\nthe first bytes of many";
        browser.write_all(head.as_bytes()).await.unwrap();
        tricklers.push(browser);
    }
    assert_eq!(third_visitor(sy.plain_addrs[0]).await, "ok");
    // The uploads finish later and Django reads them whole.
    for mut browser in tricklers {
        browser.write_all(&vec![b'z'; 100000 - 23]).await.unwrap();
        let answer = tokio::time::timeout(PATIENCE, read_until(&mut browser, "read 100000 bytes")).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
}

#[tokio::test]
async fn browsers_that_never_read_a_big_answer_do_not_hold_gunicorn_workers() {
    let gunicorn = gunicorn::start("workers", 2);
    let sy = start_switchyard(&minimal_config(&gunicorn.url, "")).await;
    let mut stalled = Vec::new();
    for _ in 0..2 {
        let mut browser = TcpStream::connect(sy.plain_addrs[0]).await.unwrap();
        browser.write_all(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        // 32 MiB answers, and nobody reads them.
        stalled.push(browser);
    }
    assert_eq!(third_visitor(sy.plain_addrs[0]).await, "ok");
    drop(stalled);
}
