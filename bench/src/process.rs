//! Child processes of the scenario runner: started with piped output, killed when dropped.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

/// A running child; its stdout and stderr are drained (so it never blocks on a full pipe) and
/// the last lines kept for error messages.
pub struct Service {
    /// Short name for messages.
    pub name: String,
    child: Child,
    lines: mpsc::Receiver<String>,
    tail: Arc<Mutex<Vec<String>>>,
}

impl Service {
    /// Starts `command` (killed when the `Service` is dropped).
    pub fn spawn(name: &str, mut command: Command) -> anyhow::Result<Service> {
        command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
        let mut child = command.spawn().map_err(|e| anyhow::anyhow!("cannot start {name}: {e}"))?;
        let (sender, lines) = mpsc::channel(256);
        let tail = Arc::new(Mutex::new(Vec::new()));
        if let Some(stdout) = child.stdout.take() {
            drain(stdout, sender.clone(), Arc::clone(&tail));
        }
        if let Some(stderr) = child.stderr.take() {
            drain(stderr, sender, Arc::clone(&tail));
        }
        Ok(Service { name: name.to_owned(), child, lines, tail })
    }

    /// The process id.
    pub fn pid(&self) -> anyhow::Result<u32> {
        self.child.id().ok_or_else(|| anyhow::anyhow!("{} has exited", self.name))
    }

    /// Waits for an output line containing `listening on ` and returns the address after it.
    pub async fn listening_address(&mut self, timeout: Duration) -> anyhow::Result<String> {
        const NEEDLE: &str = "listening on ";
        let found = tokio::time::timeout(timeout, async {
            while let Some(line) = self.lines.recv().await {
                if let Some((_, address)) = line.rsplit_once(NEEDLE) {
                    // Only the address: a log line may go on with fields (`workers=2`).
                    let address = strip_ansi(address);
                    return address.split_whitespace().next().map(str::to_owned);
                }
            }
            None
        })
        .await;
        match found {
            Ok(Some(address)) => Ok(address),
            _ => anyhow::bail!("{} did not report its address; last output:\n{}", self.name, self.tail()),
        }
    }

    /// Kills the child and waits until it has exited.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        self.child.kill().await.map_err(|e| anyhow::anyhow!("cannot stop {}: {e}", self.name))
    }

    /// The last lines the child printed.
    pub fn tail(&self) -> String {
        self.tail.lock().map(|t| t.join("\n")).unwrap_or_default()
    }
}

fn drain<R>(reader: R, sender: mpsc::Sender<String>, tail: Arc<Mutex<Vec<String>>>)
where
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let mut lines = BufReader::new(reader).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if let Ok(mut tail) = tail.lock() {
                if tail.len() >= 40 {
                    tail.remove(0);
                }
                tail.push(line.clone());
            }
            // Nobody reads after start-up: drop lines rather than buffer a chatty child's log.
            let _ = sender.try_send(line);
        }
    });
}

/// Removes terminal colour codes (tracing colours its output when it thinks it may).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
