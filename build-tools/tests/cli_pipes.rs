//! `cargo cell` writing into a closed pipe (`cargo cell help | head -1`, `cargo cell ctl ls |
//! head -1`) ends quietly, as `cat` does, instead of panicking; and a control server that hangs up
//! before reading the request is still an error the client reports, not a silent death.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixListener;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, ExitStatus, Output, Stdio};

/// Runs `cargo-cell args` with its standard output a pipe whose reading end is already closed.
fn run_into_closed_pipe(args: &[&str]) -> (ExitStatus, String) {
    let (reader, writer) = std::io::pipe().expect("a pipe");
    drop(reader);
    let child = Command::new(env!("CARGO_BIN_EXE_cargo-cell"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(Stdio::piped())
        .spawn()
        .expect("cargo-cell runs");
    let Output { status, stderr, .. } = child.wait_with_output().expect("cargo-cell ends");
    (status, String::from_utf8_lossy(&stderr).into_owned())
}

/// Ended by SIGPIPE (what `cat` does) or exited 0, and said nothing.
fn assert_quiet_end(status: ExitStatus, stderr: &str) {
    assert!(
        status.signal() == Some(libc::SIGPIPE) || status.success(),
        "{status}: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(stderr, "", "nothing on stderr");
}

#[test]
fn help_into_a_closed_pipe_ends_quietly() {
    let (status, stderr) = run_into_closed_pipe(&["help"]);
    assert_quiet_end(status, &stderr);
}

/// A control server on a fresh socket that answers one request with `reply` (wire format).
fn one_shot_server(
    reply: String,
    read_first: bool,
) -> (std::path::PathBuf, std::thread::JoinHandle<()>) {
    let dir = std::env::temp_dir().join(format!("cell-pipes-{}-{read_first}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let socket = dir.join("s.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    let server = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        if read_first {
            let mut line = String::new();
            BufReader::new(&stream).read_line(&mut line).unwrap();
            assert_eq!(line, "ls\n");
            (&stream).write_all(reply.as_bytes()).unwrap();
        }
        drop(stream);
        let _ = std::fs::remove_dir_all(dir);
    });
    (socket, server)
}

#[test]
fn ctl_ls_into_a_closed_pipe_ends_quietly() {
    let reply: String = (0..2000).map(|i| format!("cell {i}\n")).collect::<String>() + "ok\n";
    let (socket, server) = one_shot_server(reply, true);
    let (status, stderr) =
        run_into_closed_pipe(&["ctl", "ls", "--socket", socket.to_str().unwrap()]);
    server.join().unwrap();
    assert_quiet_end(status, &stderr);
}

#[test]
fn a_server_that_hangs_up_is_reported_not_a_silent_death() {
    let (socket, server) = one_shot_server(String::new(), false);
    let output = Command::new(env!("CARGO_BIN_EXE_cargo-cell"))
        .args(["ctl", "ls", "--socket", socket.to_str().unwrap()])
        .stdin(Stdio::null())
        .output()
        .expect("cargo-cell runs");
    server.join().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.signal(), None, "{stderr}");
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
}
