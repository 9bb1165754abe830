//! What the `roomcast dev` binary's tests share: starting it with its stdout
//! read line by line.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;

/// Starts `roomcast dev` with `args` and stdout piped, its command further set
/// up by `configure`; the child and its stdout lines.
pub fn spawn_dev(
    args: &[&str],
    configure: impl FnOnce(&mut Command) -> &mut Command,
) -> (Child, mpsc::Receiver<String>) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_roomcast"));
    command.arg("dev").args(args).stdout(Stdio::piped());
    let mut child = configure(&mut command)
        .spawn()
        .expect("roomcast dev starts");
    let received = stdout_lines(&mut child);
    (child, received)
}

/// The lines `child` writes to its (piped) stdout, as they come, read on a thread.
fn stdout_lines(child: &mut Child) -> mpsc::Receiver<String> {
    let (lines, received) = mpsc::channel();
    let stdout = child.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    received
}
