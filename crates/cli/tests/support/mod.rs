//! What the `roomcast dev` binary's tests share: its stdout read line by line.

use std::io::{BufRead, BufReader};
use std::process::Child;
use std::sync::mpsc;

/// The lines `child` writes to its (piped) stdout, as they come, read on a thread.
pub fn stdout_lines(child: &mut Child) -> mpsc::Receiver<String> {
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
