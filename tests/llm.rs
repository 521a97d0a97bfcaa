//! The LLM client over real HTTP on 127.0.0.1: against the scripted server
//! (replies, usage, stop words, and every fault it retries), and against a
//! tiny real model served by llama-cpp-python.

use std::collections::HashMap;
use std::time::Duration;

use swestar::agent::llm::{LlmClient, LlmError, Message, ModelConfig};
use swestar::agent::scripted::{Reply, ScriptedServer};

fn config(url: String) -> ModelConfig {
    let mut c = ModelConfig::new(url, "teacher");
    c.backoff_initial = Duration::from_millis(20);
    c.backoff_max = Duration::from_millis(100);
    c.timeout = Duration::from_secs(5);
    c
}

fn conversation(task: &str, assistant_turns: usize) -> Vec<Message> {
    let mut m = vec![Message::new("system", "You fix bugs."), Message::new("user", task)];
    for i in 0..assistant_turns {
        m.push(Message::new("assistant", format!("turn {i}")));
        m.push(Message::new("user", "EXECUTION RESULT of [think]:\nok"));
    }
    m
}

#[tokio::test]
async fn replies_follow_the_script_of_the_episode_and_report_usage() {
    let scripts = HashMap::from([
        ("task-a".to_string(), vec![Reply::text("first reply for a"), Reply::text("second reply for a")]),
        ("*".to_string(), vec![Reply::text("default reply")]),
    ]);
    let server = ScriptedServer::start(scripts).await.unwrap();
    let mut c = config(server.base_url());
    c.temperature = Some(0.0);
    c.seed = Some(7);
    c.stop = vec!["</function".into()];
    let client = LlmClient::new(c).unwrap();
    let r = client.chat(&conversation("fix task-a please", 0), &[]).await.unwrap();
    assert_eq!(r.content, "first reply for a");
    assert_eq!(r.attempts, 1);
    assert_eq!(r.usage.completion_tokens, 4);
    assert!(r.usage.prompt_tokens > 0);
    let r = client.chat(&conversation("fix task-a please", 1), &[]).await.unwrap();
    assert_eq!(r.content, "second reply for a");
    let r = client.chat(&conversation("another task", 0), &["STOP"]).await.unwrap();
    assert_eq!(r.content, "default reply");
    // What the client sent: sampling settings and the stop words.
    let sent = server.requests();
    assert_eq!(sent[0]["model"], "teacher");
    assert_eq!(sent[0]["temperature"], 0.0);
    assert_eq!(sent[0]["seed"], 7);
    assert_eq!(sent[0]["stop"], serde_json::json!(["</function"]));
    assert_eq!(sent[2]["stop"], serde_json::json!(["</function", "STOP"]));
}

#[tokio::test]
async fn server_errors_rate_limits_drops_and_timeouts_are_retried() {
    let final_text = || Box::new(Reply::text("made it"));
    let scripts = HashMap::from([
        ("e500".to_string(), vec![Reply::Fail { status: 500, times: 2, then: final_text() }]),
        ("e429".to_string(), vec![Reply::Fail { status: 429, times: 1, then: final_text() }]),
        ("drop".to_string(), vec![Reply::Drop { times: 2, then: final_text() }]),
        ("slow".to_string(), vec![Reply::Slow { delay: Duration::from_millis(1500), then: final_text() }]),
    ]);
    let server = ScriptedServer::start(scripts).await.unwrap();
    let mut c = config(server.base_url());
    c.timeout = Duration::from_millis(1000);
    let client = LlmClient::new(c).unwrap();
    for (task, attempts) in [("e500", 3), ("e429", 2), ("drop", 3)] {
        let r = client.chat(&conversation(task, 0), &[]).await.unwrap();
        assert_eq!((r.content.as_str(), r.attempts), ("made it", attempts), "{task}");
    }
    // Every attempt times out: a clear error after the limit.
    let mut c = config(server.base_url());
    c.timeout = Duration::from_millis(300);
    c.max_retries = 2;
    let client = LlmClient::new(c).unwrap();
    let e = client.chat(&conversation("slow", 0), &[]).await.unwrap_err();
    assert!(matches!(e, LlmError::Exhausted { attempts: 3, .. }), "{e}");
    assert!(e.to_string().contains("gave up after 3 attempts"), "{e}");
}

#[tokio::test]
async fn client_errors_are_not_retried_and_nothing_listening_is_exhausted() {
    let server = ScriptedServer::start(HashMap::from([(
        "bad".to_string(),
        vec![Reply::Fail { status: 400, times: 99, then: Box::new(Reply::text("never")) }],
    )]))
    .await
    .unwrap();
    let client = LlmClient::new(config(server.base_url())).unwrap();
    let e = client.chat(&conversation("bad", 0), &[]).await.unwrap_err();
    assert!(matches!(e, LlmError::Rejected { status: 400, .. }), "{e}");
    assert_eq!(server.requests().len(), 1);
    // A port nothing listens on: connect errors, retried, then given up.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut c = config(format!("http://127.0.0.1:{port}/v1"));
    c.max_retries = 2;
    let e = LlmClient::new(c).unwrap().chat(&conversation("x", 0), &[]).await.unwrap_err();
    assert!(matches!(e, LlmError::Exhausted { attempts: 3, .. }), "{e}");
}

mod common;

/// A real OpenAI-compatible server with a real (tiny) model.
struct RealServer {
    child: std::process::Child,
    url: String,
}

impl Drop for RealServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn real_server() -> RealServer {
    let (python, model) = common::serve::model();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = std::process::Command::new(python)
        .args([
            "-m",
            "llama_cpp.server",
            "--model",
            &model,
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--n_ctx",
            "1024",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let server = RealServer { child, url: format!("http://127.0.0.1:{port}/v1") };
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(std::time::Instant::now() < deadline, "llama_cpp.server did not start");
        std::thread::sleep(Duration::from_millis(200));
    }
    server
}

#[tokio::test]
async fn against_a_real_model_server() {
    let server = real_server();
    let mut c = config(server.url.clone());
    c.timeout = Duration::from_secs(60);
    c.temperature = Some(0.0);
    c.seed = Some(1);
    c.max_tokens = Some(24);
    let client = LlmClient::new(c.clone()).unwrap();
    let msgs = vec![
        Message::new("system", "You are a helpful assistant."),
        Message::new("user", "Count from one to ten in words, separated by commas."),
    ];
    let r = client.chat(&msgs, &[]).await.unwrap();
    assert!(!r.content.trim().is_empty());
    assert!(r.usage.prompt_tokens > 10 && r.usage.completion_tokens > 0, "{:?}", r.usage);
    // The same request with a stop word: generation ends before it.
    let full = r.content.to_lowercase();
    let stop = if full.contains("three") { "three" } else { "," };
    let r = client.chat(&msgs, &[stop]).await.unwrap();
    assert!(!r.content.to_lowercase().contains(stop), "{:?} still contains {stop:?}", r.content);
    assert_eq!(r.finish_reason.as_deref(), Some("stop"));
    // A timeout shorter than any completion: retried, then a clear error.

    c.timeout = Duration::from_millis(1);
    c.max_retries = 1;
    let e = LlmClient::new(c).unwrap().chat(&msgs, &[]).await.unwrap_err();
    assert!(matches!(e, LlmError::Exhausted { attempts: 2, .. }), "{e}");
}
