//! A scripted OpenAI-compatible server on 127.0.0.1: the one stand-in the
//! project allows, for a capable teacher model that cannot run here. It
//! replays per-episode scripts of model replies and can inject faults (HTTP
//! errors, slow replies, dropped connections), so that the client, the
//! episode loop and whole rollouts are tested over real HTTP. Users reach
//! it as `swestar serve --replay`, to run a workflow without a model.
//!
//! A request belongs to the script whose key appears in its first user
//! message (an instance id, say), else in a later user message, else to
//! the `"*"` script; its step is the
//! number of assistant messages it already carries. Replies are therefore a
//! function of the conversation, and a retried request gets the same one.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the server does for one step.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// A normal completion with this content.
    Text(String),
    /// Fail this many times with the status before answering `then`.
    Fail { status: u16, times: u32, then: Box<Reply> },
    /// Wait before answering.
    Slow { delay: Duration, then: Box<Reply> },
    /// Close the connection without answering, this many times.
    Drop { times: u32, then: Box<Reply> },
}

impl Reply {
    pub fn text(s: impl Into<String>) -> Reply {
        Reply::Text(s.into())
    }
}

#[derive(Default)]
struct State {
    scripts: HashMap<String, Vec<Reply>>,
    /// Match user messages with their absolute paths blanked (see
    /// [`blank_paths`]): for scripts recorded in other sandboxes.
    blank_paths: bool,
    /// (script, step) → faults already served.
    served: HashMap<(String, usize), u32>,
    /// Requests received, for tests.
    requests: Vec<Value>,
}

/// A running scripted server; stops when dropped.
pub struct ScriptedServer {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ScriptedServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Rough token count for `usage`: whitespace-separated words.
fn words(s: &str) -> u64 {
    s.split_whitespace().count() as u64
}

impl ScriptedServer {
    /// Starts on an ephemeral port of 127.0.0.1.
    pub async fn start(scripts: HashMap<String, Vec<Reply>>) -> std::io::Result<ScriptedServer> {
        Self::bind("127.0.0.1:0".parse().expect("an address"), scripts, false).await
    }

    /// Starts on `addr`; with `blank_paths`, keys and user messages are
    /// compared with their absolute paths blanked, so that replies
    /// recorded with one sandbox directory in the prompt replay in another.
    pub async fn bind(
        addr: SocketAddr,
        scripts: HashMap<String, Vec<Reply>>,
        blank_paths: bool,
    ) -> std::io::Result<ScriptedServer> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(State { scripts, blank_paths, ..Default::default() }));
        let s = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let _ = stream.set_nodelay(true);
                let s = s.clone();
                tokio::spawn(async move {
                    let _ = serve(stream, s).await;
                });
            }
        });
        Ok(ScriptedServer { addr, state, task })
    }

    /// `http://127.0.0.1:PORT/v1`
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// The request bodies received so far.
    pub fn requests(&self) -> Vec<Value> {
        self.state.lock().expect("state").requests.clone()
    }
}

async fn serve(mut stream: TcpStream, state: Arc<Mutex<State>>) -> std::io::Result<()> {
    loop {
        let Some((path, body)) = read_request(&mut stream).await? else { return Ok(()) };
        if path.ends_with("/models") {
            write_json(&mut stream, 200, &json!({"object": "list", "data": [{"id": "scripted", "object": "model"}]}))
                .await?;
            continue;
        }
        let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let (mut reply, key, step) = {
            let mut st = state.lock().expect("state");
            st.requests.push(request.clone());
            let messages = request["messages"].as_array().cloned().unwrap_or_default();
            // The first user message names the task (an agent's); failing
            // that, the user messages in order (a prompt whose first user
            // message is shared, such as demonstrations).
            let users = messages.iter().filter(|m| m["role"] == "user").filter_map(|m| m["content"].as_str());
            let key = users.into_iter().find_map(|text| {
                let text = if st.blank_paths { blank_paths(text) } else { text.to_string() };
                st.scripts
                    .keys()
                    .filter(|k| k.as_str() != "*" && text.contains(k.as_str()))
                    .max_by_key(|k| k.len())
                    .cloned()
            });
            let key = key.unwrap_or_else(|| "*".to_string());
            let step = messages.iter().filter(|m| m["role"] == "assistant").count();
            let reply = st.scripts.get(&key).and_then(|s| s.get(step)).cloned();
            (reply, key, step)
        };
        let Some(r) = reply.take() else {
            write_json(&mut stream, 400, &json!({"error": {"message": format!("script `{key}` has no step {step}")}}))
                .await?;
            continue;
        };
        let mut r = r;
        loop {
            match r {
                Reply::Text(content) => {
                    let prompt: u64 = request["messages"]
                        .as_array()
                        .map(|m| m.iter().map(|x| words(x["content"].as_str().unwrap_or(""))).sum())
                        .unwrap_or(0);
                    let body = json!({
                        "id": format!("chatcmpl-{key}-{step}"),
                        "object": "chat.completion",
                        "model": request["model"].as_str().unwrap_or("scripted"),
                        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
                        "usage": {"prompt_tokens": prompt, "completion_tokens": words(&content), "total_tokens": prompt + words(&content)},
                    });
                    write_json(&mut stream, 200, &body).await?;
                    break;
                }
                Reply::Slow { delay, then } => {
                    tokio::time::sleep(delay).await;
                    r = *then;
                }
                Reply::Fail { status, times, then } => {
                    if take_fault(&state, &key, step, times) {
                        write_json(&mut stream, status, &json!({"error": {"message": "injected fault"}})).await?;
                        break;
                    }
                    r = *then;
                }
                Reply::Drop { times, then } => {
                    if take_fault(&state, &key, step, times) {
                        return Ok(());
                    }
                    r = *then;
                }
            }
        }
    }
}

/// Text with every absolute path of two or more components (`/tmp/x/repo`,
/// `/tmp/x/repo/src/a.py`) replaced by `<path>`.
pub fn blank_paths(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find('/') {
        let (before, from) = rest.split_at(start);
        out.push_str(before);
        let at_token_start = before.chars().next_back().is_none_or(|c| c.is_whitespace() || "\"'`([{=:,".contains(c));
        let end = from.find(|c: char| c.is_whitespace() || "\"'`)]},;".contains(c)).unwrap_or(from.len());
        let token = &from[..end];
        if at_token_start && token.matches('/').count() >= 2 && token.len() > 2 {
            out.push_str("<path>");
        } else {
            out.push_str(token);
        }
        rest = &from[end..];
    }
    out.push_str(rest);
    out
}

/// Whether this request gets the fault (the first `times` requests do).
fn take_fault(state: &Arc<Mutex<State>>, key: &str, step: usize, times: u32) -> bool {
    let mut st = state.lock().expect("state");
    let n = st.served.entry((key.to_string(), step)).or_default();
    if *n < times {
        *n += 1;
        true
    } else {
        false
    }
}

/// Reads one HTTP/1.1 request: its path and body (`None` at end of stream).
async fn read_request(stream: &mut TcpStream) -> std::io::Result<Option<(String, Vec<u8>)>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let header_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..header_end]).into_owned();
    let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
    let length: usize = head
        .lines()
        .find_map(|l| {
            l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case("content-length")).map(|(_, v)| v.trim())
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[header_end..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Ok(Some((path, body)))
}

async fn write_json(stream: &mut TcpStream, status: u16, body: &Value) -> std::io::Result<()> {
    let body = serde_json::to_vec(body).expect("json");
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    // One write: a head and a body in two small segments meet Nagle's
    // algorithm and delayed ACKs, a 40 ms stall per reply.
    let mut message = head.into_bytes();
    message.extend_from_slice(&body);
    stream.write_all(&message).await?;
    stream.flush().await
}

#[cfg(test)]
mod tests {
    #[test]
    fn absolute_paths_are_blanked_and_the_rest_kept() {
        let cases = [
            ("Fix it in /tmp/.tmpAb12/repo.", "Fix it in <path>"),
            ("cd /testbed && ls", "cd /testbed && ls"),
            ("files: `/tmp/a/b/c.py`, a / b", "files: `<path>`, a / b"),
            ("path=/srv/x/y and (/opt/z/w)", "path=<path> and (<path>)"),
            ("no paths here", "no paths here"),
        ];
        for (text, want) in cases {
            assert_eq!(super::blank_paths(text), want, "{text}");
        }
    }
}
