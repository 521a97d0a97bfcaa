//! A persistent bash session on a pseudo-terminal: the working directory,
//! environment and background jobs persist from one command to the next.
//! Each command's end is found by a sentinel line carrying its exit code.
//! A command past its timeout gets Ctrl-C on the terminal (which also stops
//! shell loops), then SIGKILL for its process group if it ignores that; the
//! session itself survives. Output is kept in bounded memory: the head and
//! the tail, with a marker for what was cut from the middle.
//!
//! A terminal rather than pipes, because only an interactive shell with job
//! control interrupts a foreground job and keeps going, the way a person at
//! a terminal (and OpenHands' tmux session) does.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::time::Duration;

use tokio::io::unix::AsyncFd;
use tokio::time::Instant;

/// What one command produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandOutput {
    pub output: String,
    /// `None` when the command had to be stopped.
    pub exit_code: Option<i32>,
    pub timed_out: bool,
    /// Characters cut from the middle of the output.
    pub truncated: usize,
}

/// Head and tail of a byte stream, within a fixed budget.
#[derive(Debug)]
struct Bounded {
    limit: usize,
    head: Vec<u8>,
    tail: std::collections::VecDeque<u8>,
    dropped: usize,
}

impl Bounded {
    fn new(limit: usize) -> Bounded {
        Bounded { limit: limit.max(2), head: Vec::new(), tail: Default::default(), dropped: 0 }
    }

    fn push(&mut self, mut data: &[u8]) {
        let half = self.limit / 2;
        if self.head.len() < half {
            let take = (half - self.head.len()).min(data.len());
            self.head.extend_from_slice(&data[..take]);
            data = &data[take..];
        }
        let tail_cap = self.limit - half;
        if data.len() >= tail_cap {
            self.dropped += self.tail.len() + data.len() - tail_cap;
            self.tail.clear();
            self.tail.extend(&data[data.len() - tail_cap..]);
            return;
        }
        let overflow = (self.tail.len() + data.len()).saturating_sub(tail_cap);
        self.tail.drain(..overflow);
        self.dropped += overflow;
        self.tail.extend(data);
    }

    /// The last `n` bytes seen (from the tail, or the head when short).
    fn ends_with_window(&self, n: usize) -> Vec<u8> {
        let mut all: Vec<u8> = if self.dropped == 0 && self.tail.len() < n {
            self.head.iter().chain(self.tail.iter()).copied().collect()
        } else {
            self.tail.iter().copied().collect()
        };
        let start = all.len().saturating_sub(n);
        all.drain(..start);
        all
    }
}

pub struct BashSession {
    master: AsyncFd<OwnedFd>,
    child: tokio::process::Child,
    nonce: String,
    /// Bytes read after the last sentinel (a background job's late output).
    pending: Vec<u8>,
    /// Sentinels sent so far; each carries its number, so one sent again
    /// after an interrupt is never taken for a later command's end.
    seq: u64,
    /// Output kept per command (characters, split between head and tail).
    pub output_limit: usize,
    /// For a shell inside a container: how to run a program beside it, and
    /// the shell's PID there.
    inside: Option<(Vec<String>, u32)>,
}

fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

impl BashSession {
    /// Starts `bash` (or the given program, e.g. `podman exec -it … bash`)
    /// in `cwd` on a fresh terminal.
    pub async fn start(program: &[String], cwd: &Path, env: &[(String, String)]) -> io::Result<BashSession> {
        let (mut master, mut slave) = (0, 0);
        if unsafe { libc::openpty(&mut master, &mut slave, std::ptr::null_mut(), std::ptr::null(), std::ptr::null()) }
            != 0
        {
            return Err(io::Error::last_os_error());
        }
        let master = unsafe { OwnedFd::from_raw_fd(master) };
        let slave = unsafe { OwnedFd::from_raw_fd(slave) };
        let (program, args) = match program.split_first() {
            Some((p, a)) => (p.clone(), a.to_vec()),
            None => {
                ("bash".to_string(), vec!["--norc".into(), "--noprofile".into(), "--noediting".into(), "-i".into()])
            }
        };
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(args)
            .current_dir(cwd)
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("TERM", "dumb")
            .env("PS1", "")
            .env("PS2", "")
            .env("PAGER", "cat")
            .env("GIT_PAGER", "cat")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(std::process::Stdio::from(slave.try_clone()?))
            .stdout(std::process::Stdio::from(slave.try_clone()?))
            .stderr(std::process::Stdio::from(slave));
        unsafe {
            cmd.pre_exec(|| {
                // A session of its own with the terminal as controlling tty,
                // so Ctrl-C reaches the foreground job.
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(io::Error::last_os_error());
                }
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        cmd.kill_on_drop(true);
        let child = cmd.spawn()?;
        set_nonblocking(master.as_raw_fd())?;
        let seed = format!("{:?}{}{}", Instant::now(), std::process::id(), master.as_raw_fd());
        let nonce = blake3::hash(seed.as_bytes()).to_hex()[..12].to_string();
        // SAFETY: the OwnedFd is moved in, stays open and is the same fd for
        // as long as the AsyncFd lives.
        let master = unsafe { AsyncFd::register(master) }.map_err(|e| io::Error::other(e.to_string()))?;
        let mut s =
            BashSession { master, child, nonce, pending: Vec::new(), seq: 0, output_limit: 30_000, inside: None };
        // No echo and no CR translation: what we read is what commands print.
        // No bytecode caches: Python trusts a .pyc whose source has the same
        // size and mtime second, so an edit in the second after a test run
        // would be tested as the old code.
        let setup = "stty -echo -onlcr 2>/dev/null; unset PROMPT_COMMAND; PS1=''; PS2=''; \
                     export PAGER=cat GIT_PAGER=cat PYTHONDONTWRITEBYTECODE=1";
        let out = s.run(setup, Duration::from_secs(30)).await?;
        if out.exit_code.is_none() {
            return Err(io::Error::other(format!("the shell did not start: {}", out.output)));
        }
        Ok(s)
    }

    /// For a shell reached through `podman exec` or `apptainer exec`: the
    /// foreground process group seen from here is the exec client, so a
    /// command past its timeout is killed from inside, by running
    /// `prefix bash -c …` beside the shell.
    pub async fn kill_inside(&mut self, prefix: Vec<String>) -> io::Result<()> {
        let out = self.run("echo $$", Duration::from_secs(30)).await?;
        let pid =
            out.output.trim().parse().map_err(|_| io::Error::other(format!("no shell PID in `{}`", out.output)))?;
        self.inside = Some((prefix, pid));
        Ok(())
    }

    /// SIGKILL for the terminal's foreground job, unless that is the shell.
    async fn kill_foreground(&self) {
        let fg = unsafe { libc::tcgetpgrp(self.master.get_ref().as_raw_fd()) };
        let shell = self.child.id().map(|p| p as i32).unwrap_or(-1);
        if let Some((prefix, pid)) = &self.inside {
            // Field 8 of /proc/PID/stat: the terminal's foreground group.
            let script = format!("read -a f < /proc/{pid}/stat && [ \"${{f[7]}}\" != {pid} ] && kill -9 -- -${{f[7]}}");
            let mut cmd = tokio::process::Command::new(&prefix[0]);
            cmd.args(&prefix[1..]).args(["bash", "-c", &script]).stdin(std::process::Stdio::null());
            cmd.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
            let _ = tokio::time::timeout(Duration::from_secs(10), cmd.status()).await;
        } else if fg > 0 && fg != shell {
            unsafe { libc::kill(-fg, libc::SIGKILL) };
        }
    }

    async fn write_all(&self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let mut guard = self.master.writable().await?;
            match guard.try_io(|fd| {
                let n = unsafe { libc::write(fd.as_raw_fd(), data.as_ptr().cast(), data.len()) };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            }) {
                Ok(Ok(n)) => data = &data[n..],
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
        Ok(())
    }

    async fn read_some(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let mut guard = self.master.readable().await?;
            match guard.try_io(|fd| {
                let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            }) {
                Ok(Ok(n)) => return Ok(n),
                // EIO: the shell is gone.
                Ok(Err(e)) if e.raw_os_error() == Some(libc::EIO) => return Ok(0),
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
    }

    fn sentinel_line(&mut self) -> String {
        self.seq += 1;
        format!(
            "__swestar_ec=$?; printf '\\n__SWESTAR_%s_%s_%s__\\n' \"$__swestar_ec\" '{}' '{}'\n",
            self.nonce, self.seq
        )
    }

    /// Finds `\n__SWESTAR_<code>_<nonce>_<seq>__\n` at the end of the
    /// output, for a sentinel numbered at least `min_seq`.
    fn find_sentinel(&self, window: &[u8], min_seq: u64) -> Option<(usize, i32)> {
        let text = String::from_utf8_lossy(window);
        if !text.ends_with("__\n") {
            return None;
        }
        let start = text.rfind("\n__SWESTAR_")?;
        let body = text[start + "\n__SWESTAR_".len()..].strip_suffix("__\n")?;
        let mut parts = body.splitn(3, '_');
        let (code, nonce, seq) = (parts.next()?, parts.next()?, parts.next()?);
        if nonce != self.nonce || seq.parse::<u64>().ok()? < min_seq {
            return None;
        }
        // Bytes from the sentinel's start to the end of the window.
        Some((text.len() - start, code.parse().ok()?))
    }

    /// Removes sentinels of earlier commands (sent again after an interrupt).
    fn strip_stale(&self, output: String) -> String {
        let mut out = output;
        while let Some(start) = out.find("\n__SWESTAR_") {
            let rest = &out[start + 1..];
            let Some(end) = rest.find("__\n") else { break };
            if !rest[..end].contains(&self.nonce) {
                break;
            }
            out.replace_range(start..start + 1 + end + 3, "");
        }
        out
    }

    /// Runs one command; cwd, environment and background jobs persist.
    pub async fn run(&mut self, command: &str, timeout: Duration) -> io::Result<CommandOutput> {
        let mut out = Bounded::new(self.output_limit);
        out.push(&std::mem::take(&mut self.pending));
        let mut text = command.trim_end().to_string();
        text.push('\n');
        text.push_str(&self.sentinel_line());
        let min_seq = self.seq;
        self.write_all(text.as_bytes()).await?;
        let deadline = Instant::now() + timeout;
        let mut timed_out = false;
        let mut interrupted_at: Option<Instant> = None;
        let mut killed = false;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let wait =
                if timed_out { Duration::from_millis(500) } else { deadline.saturating_duration_since(Instant::now()) };
            match tokio::time::timeout(wait, self.read_some(&mut buf)).await {
                Ok(Ok(0)) => {
                    return Ok(CommandOutput {
                        output: finish(out, 0).0 + "\n[the shell exited]",
                        exit_code: None,
                        timed_out,
                        truncated: 0,
                    })
                }
                Ok(Ok(n)) => {
                    out.push(&buf[..n]);
                    let window = out.ends_with_window(256);
                    if let Some((sentinel_len, code)) = self.find_sentinel(&window, min_seq) {
                        let (output, truncated) = finish(out, sentinel_len);
                        return Ok(CommandOutput {
                            output: self.strip_stale(output),
                            exit_code: (!timed_out).then_some(code),
                            timed_out,
                            truncated,
                        });
                    }
                }
                Ok(Err(e)) => return Err(e),
                Err(_elapsed) => {
                    // Past the deadline: Ctrl-C, then SIGKILL for the foreground
                    // job; each time the sentinel is sent again, since the
                    // interrupt flushes the terminal's pending input.
                    if !timed_out {
                        timed_out = true;
                        interrupted_at = Some(Instant::now());
                        self.write_all(b"\x03").await?;
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        let line = self.sentinel_line();
                        self.write_all(line.as_bytes()).await?;
                    } else if !killed && interrupted_at.is_some_and(|t| t.elapsed() > Duration::from_secs(2)) {
                        killed = true;
                        self.kill_foreground().await;
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        let line = self.sentinel_line();
                        self.write_all(line.as_bytes()).await?;
                    } else if killed && interrupted_at.is_some_and(|t| t.elapsed() > Duration::from_secs(10)) {
                        return Err(io::Error::other("the shell does not respond after its command was killed"));
                    }
                }
            }
        }
    }

    /// Ends the session and everything it started.
    pub async fn close(mut self) {
        if let Some(pid) = self.child.id() {
            // The shell leads its own session and process group.
            unsafe { libc::kill(-(pid as i32), libc::SIGKILL) };
        }
        let _ = self.child.kill().await;
    }
}

/// The output without the sentinel, with the cut marked.
fn finish(out: Bounded, sentinel_len: usize) -> (String, usize) {
    let mut tail: Vec<u8> = out.tail.into_iter().collect();
    let mut head = out.head;
    if sentinel_len <= tail.len() {
        tail.truncate(tail.len() - sentinel_len);
    } else {
        let rest = sentinel_len - tail.len();
        tail.clear();
        head.truncate(head.len().saturating_sub(rest));
    }
    let (head, tail) = (String::from_utf8_lossy(&head).into_owned(), String::from_utf8_lossy(&tail).into_owned());
    if out.dropped == 0 {
        return (head + &tail, 0);
    }
    (format!("{head}{}{tail}", cut_marker(out.dropped)), out.dropped)
}

/// What stands where output was cut from the middle.
fn cut_marker(dropped: usize) -> String {
    format!("\n[... {dropped} characters cut from the middle of the output ...]\n")
}

/// `text` cut in the middle to `keep` characters, half from each end, the
/// way a shell's long output is cut (the same marker); whole if it is not
/// longer.
pub fn cut_middle(text: &str, keep: usize) -> String {
    let n = text.chars().count();
    if n <= keep {
        return text.to_string();
    }
    let head_chars = keep / 2;
    let tail_chars = keep - head_chars;
    let head_end = text.char_indices().nth(head_chars).map_or(text.len(), |(i, _)| i);
    let tail_start = text.char_indices().nth(n - tail_chars).map_or(text.len(), |(i, _)| i);
    format!("{}{}{}", &text[..head_end], cut_marker(n - keep), &text[tail_start..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_middle_keeps_both_ends_and_says_how_much_is_gone() {
        assert_eq!(cut_middle("abcdef", 6), "abcdef");
        assert_eq!(cut_middle("abcdefgh", 4), "ab\n[... 4 characters cut from the middle of the output ...]\ngh");
        assert_eq!(cut_middle("ééééé", 2), "é\n[... 3 characters cut from the middle of the output ...]\né");
    }

    #[test]
    fn bounded_keeps_head_and_tail() {
        let mut b = Bounded::new(10);
        b.push(b"0123456789abcdefghij");
        assert_eq!(b.head, b"01234");
        assert_eq!(b.tail.iter().copied().collect::<Vec<_>>(), b"fghij");
        assert_eq!(b.dropped, 10);
        b.push(b"XY");
        assert_eq!(b.tail.iter().copied().collect::<Vec<_>>(), b"hijXY");
        assert_eq!(b.dropped, 12);
        let (text, cut) = finish(b, 0);
        assert_eq!(cut, 12);
        assert!(text.starts_with("01234\n[... 12 characters cut") && text.ends_with("hijXY"), "{text}");
    }
}
