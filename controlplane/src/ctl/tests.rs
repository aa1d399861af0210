use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::*;

/// A fresh directory under the system's temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("ctl-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[derive(Serialize)]
struct Row {
    id: u64,
    user: &'static str,
    address: &'static str,
}

fn handler(request: Request) -> Reply {
    match request {
        Request::Show {
            what: Show::Sessions,
        } => Reply::ok(&[
            Row {
                id: 7,
                user: "sub0",
                address: "100.64.0.2",
            },
            Row {
                id: 12,
                user: "subscriber-long",
                address: "100.64.0.3",
            },
        ]),
        Request::Show { what: Show::Stats } => Reply::ok(&serde_json::json!({"sessions": 2})),
        Request::Clear {
            what: Clear::Session,
            id: 7,
        } => Reply::ok("session 7 cleared"),
        Request::Clear { id, .. } => Reply::error(format!("no session {id}")),
        other => Reply::error(format!("{other}: not supported")),
    }
}

/// Runs a server polling every millisecond on a thread until stopped.
fn serve_in_background(path: PathBuf) -> (Arc<AtomicBool>, std::thread::JoinHandle<ServerStats>) {
    let mut server = ControlServer::bind(&path).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let thread = std::thread::spawn(move || {
        while !flag.load(Ordering::Relaxed) {
            server.poll(handler);
            std::thread::sleep(Duration::from_millis(1));
        }
        server.stats()
    });
    (stop, thread)
}

#[test]
fn round_trip_over_a_socket() {
    let dir = TempDir::new("round-trip");
    let path = dir.0.join("d.sock");
    let (stop, thread) = serve_in_background(path.clone());
    let timeout = Duration::from_secs(5);

    let reply = request(
        &path,
        &Request::Show {
            what: Show::Sessions,
        },
        timeout,
    )
    .unwrap();
    let data = reply.result().unwrap();
    // Field order is the struct's.
    assert!(data.starts_with("[{\"id\":7,\"user\":\"sub0\""), "{data}");
    let table = render(data).unwrap();
    assert_eq!(
        table,
        "ID  USER             ADDRESS\n\
         7   sub0             100.64.0.2\n\
         12  subscriber-long  100.64.0.3\n"
    );

    let reply = request(&path, &Request::Show { what: Show::Stats }, timeout).unwrap();
    assert_eq!(render(reply.result().unwrap()).unwrap(), "sessions: 2\n");

    let reply = request(
        &path,
        &Request::Clear {
            what: Clear::Session,
            id: 7,
        },
        timeout,
    )
    .unwrap();
    assert_eq!(reply.result(), Ok("\"session 7 cleared\""));
    let reply = request(
        &path,
        &Request::Clear {
            what: Clear::Tunnel,
            id: 9,
        },
        timeout,
    )
    .unwrap();
    assert_eq!(reply.result(), Err("no session 9"));

    stop.store(true, Ordering::Relaxed);
    let stats = thread.join().unwrap();
    assert_eq!(stats.requests, 4);
    // The socket is gone with the server.
    assert!(!path.exists());
}

#[test]
fn bad_requests_get_an_error_and_the_connection_stays() {
    let dir = TempDir::new("bad");
    let path = dir.0.join("d.sock");
    let (stop, thread) = serve_in_background(path.clone());
    let mut stream = UnixStream::connect(&path).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
        .write_all(b"not json\n{\"command\":\"show\",\"what\":\"routes\"}\n{\"command\":\"show\",\"what\":\"stats\"}\n")
        .unwrap();
    let mut got = String::new();
    let mut buf = [0u8; 4096];
    while got.matches('\n').count() < 3 {
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0, "closed early: {got}");
        got.push_str(std::str::from_utf8(&buf[..n]).unwrap());
    }
    let lines: Vec<&str> = got.lines().collect();
    assert!(
        lines[0].starts_with("{\"ok\":false,\"error\":\"bad request"),
        "{got}"
    );
    assert!(lines[1].contains("unknown variant `routes`"), "{got}");
    assert_eq!(lines[2], "{\"ok\":true,\"data\":{\"sessions\":2}}");
    stop.store(true, Ordering::Relaxed);
    thread.join().unwrap();
}

#[test]
fn a_huge_request_is_refused_and_a_silent_client_does_not_stall_others() {
    let dir = TempDir::new("bounds");
    let path = dir.0.join("d.sock");
    let (stop, thread) = serve_in_background(path.clone());
    // One client connects and never sends a newline.
    let _silent = UnixStream::connect(&path).unwrap();
    (&_silent).write_all(b"{\"command\":").unwrap();
    // Another sends more than MAX_REQUEST without a newline.
    let mut big = UnixStream::connect(&path).unwrap();
    big.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let junk = vec![b'x'; MAX_REQUEST + 10];
    let _ = big.write_all(&junk);
    let mut got = String::new();
    let _ = big.read_to_string(&mut got);
    assert!(got.contains("request longer than"), "{got}");
    // The daemon still answers others.
    let reply = request(
        &path,
        &Request::Show { what: Show::Stats },
        Duration::from_secs(5),
    );
    assert!(reply.unwrap().is_ok());
    stop.store(true, Ordering::Relaxed);
    let stats = thread.join().unwrap();
    assert!(stats.dropped >= 1, "{stats:?}");
}

#[test]
fn clients_beyond_the_limit_are_turned_away() {
    let dir = TempDir::new("limit");
    let path = dir.0.join("d.sock");
    let mut server = ControlServer::bind(&path).unwrap();
    let held: Vec<UnixStream> = (0..MAX_CLIENTS)
        .map(|_| UnixStream::connect(&path).unwrap())
        .collect();
    server.poll(handler);
    assert_eq!(server.client_count(), MAX_CLIENTS);
    let mut extra = UnixStream::connect(&path).unwrap();
    extra
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    server.poll(handler);
    let mut got = String::new();
    let _ = extra.read_to_string(&mut got);
    assert!(got.contains("too many control clients"), "{got}");
    assert_eq!(server.stats().refused, 1);
    drop(held);
}

#[test]
fn a_stale_socket_is_replaced_and_a_live_one_is_not() {
    let dir = TempDir::new("stale");
    let path = dir.0.join("d.sock");
    let first = ControlServer::bind(&path).unwrap();
    let err = ControlServer::bind(&path).unwrap_err();
    assert!(err.to_string().contains("another daemon"), "{err}");
    // A socket file nobody listens on (a daemon that was killed).
    std::mem::forget(first);
    // The forgotten listener still holds the socket open; simulate death by
    // binding a listener and dropping it without removing the file.
    let path2 = dir.0.join("e.sock");
    drop(std::os::unix::net::UnixListener::bind(&path2).unwrap());
    assert!(path2.exists());
    ControlServer::bind(&path2).unwrap();
    std::fs::write(dir.0.join("plain"), b"x").unwrap();
    assert!(ControlServer::bind(&dir.0.join("plain")).is_err());
}

#[test]
fn requests_read_as_documented() {
    let r: Request = serde_json::from_str(r#"{"command":"clear","what":"tunnel","id":3}"#).unwrap();
    assert_eq!(
        r,
        Request::Clear {
            what: Clear::Tunnel,
            id: 3
        }
    );
    let r: Request = serde_json::from_str(r#"{"command":"ha","args":["status"]}"#).unwrap();
    assert_eq!(
        r,
        Request::Ha {
            args: vec!["status".to_owned()]
        }
    );
    assert_eq!(
        serde_json::to_string(&Request::Show {
            what: Show::Tunnels
        })
        .unwrap(),
        r#"{"command":"show","what":"tunnels"}"#
    );
    assert_eq!(
        Reply::error("x \"y\"").to_line(),
        r#"{"ok":false,"error":"x \"y\""}"#
    );
    assert_eq!(
        Reply::from_line(r#"{"ok":false,"error":"e"}"#)
            .unwrap()
            .result(),
        Err("e")
    );
    assert_eq!(render("[]").unwrap(), "(none)\n");
}

#[test]
fn a_last_request_without_newline_is_answered_before_close() {
    let dir = TempDir::new("eof");
    let path = dir.0.join("d.sock");
    let (stop, thread) = serve_in_background(path.clone());
    let mut stream = UnixStream::connect(&path).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
        .write_all(br#"{"command":"show","what":"stats"}"#)
        .unwrap();
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    let mut got = String::new();
    stream.read_to_string(&mut got).unwrap();
    assert_eq!(got, "{\"ok\":true,\"data\":{\"sessions\":2}}\n");
    stop.store(true, Ordering::Relaxed);
    thread.join().unwrap();
}

#[test]
fn ha_requests_read_and_write_as_documented() {
    let cases = [
        (r#"{"command":"ha","args":["status"]}"#, HaCommand::Status),
        (r#"{"command":"ha","args":["drain"]}"#, HaCommand::Drain),
        (
            r#"{"command":"ha","args":["failback"]}"#,
            HaCommand::Failback,
        ),
        (
            r#"{"command":"ha","args":["switchover","all"]}"#,
            HaCommand::Switchover {
                kind: SwitchoverKind::All,
                sessions: Vec::new(),
            },
        ),
        (
            r#"{"command":"ha","args":["switchover","new"]}"#,
            HaCommand::Switchover {
                kind: SwitchoverKind::New,
                sessions: Vec::new(),
            },
        ),
        (
            r#"{"command":"ha","args":["switchover","3","12"]}"#,
            HaCommand::Switchover {
                kind: SwitchoverKind::Listed,
                sessions: vec![3, 12],
            },
        ),
    ];
    for (json, command) in cases {
        let request = Request::ha(&command);
        assert_eq!(serde_json::from_str::<Request>(json).unwrap(), request);
        assert_eq!(serde_json::to_string(&request).unwrap(), json);
        let Request::Ha { args } = request else {
            panic!("not an ha request")
        };
        assert_eq!(HaCommand::parse(&args), Ok(command));
    }
}

#[test]
fn ha_words_parse_as_l2tpctl_takes_them() {
    assert_eq!(HaCommand::parse(&["status"]), Ok(HaCommand::Status));
    assert_eq!(HaCommand::parse(&["drain"]), Ok(HaCommand::Drain));
    assert_eq!(HaCommand::parse(&["failback"]), Ok(HaCommand::Failback));
    assert_eq!(
        HaCommand::parse(&["switchover", "all"]),
        Ok(HaCommand::Switchover {
            kind: SwitchoverKind::All,
            sessions: Vec::new()
        })
    );
    assert_eq!(
        HaCommand::parse(&["switchover", "new"]),
        Ok(HaCommand::Switchover {
            kind: SwitchoverKind::New,
            sessions: Vec::new()
        })
    );
    let listed = HaCommand::parse(&["switchover", "3", "12"]).unwrap();
    assert_eq!(
        listed,
        HaCommand::Switchover {
            kind: SwitchoverKind::Listed,
            sessions: vec![3, 12]
        }
    );
    assert_eq!(listed.to_string(), "switchover 3 12");
    let e = HaCommand::parse(&["switchover", "3", "x"]).unwrap_err();
    assert!(e.contains("\"x\" is not a session id"), "{e}");
    assert!(HaCommand::parse(&["switchover"])
        .unwrap_err()
        .contains("all, new"));
    assert!(HaCommand::parse::<&str>(&[])
        .unwrap_err()
        .contains("status, drain"));
    assert!(HaCommand::parse(&["reboot"])
        .unwrap_err()
        .starts_with("ha reboot:"));
}

#[test]
fn an_object_with_rows_renders_its_scalars_then_its_tables() {
    let data = r#"{"role":"lns","draining":false,"peers":[{"address":"10.0.0.12","state":"up"},{"address":"10.0.0.13","state":"connecting"}],"lacs":[]}"#;
    assert_eq!(
        render(data).unwrap(),
        "role:     lns\n\
         draining: false\n\
         lacs:     []\n\
         \n\
         peers:\n\
         \x20 ADDRESS    STATE\n\
         \x20 10.0.0.12  up\n\
         \x20 10.0.0.13  connecting\n"
    );
}
