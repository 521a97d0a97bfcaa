//! The LLM client: OpenAI-compatible `/v1/chat/completions` over reqwest
//! (SGLang, vLLM, llama.cpp, OpenAI). Connect errors, timeouts, 429 and 5xx
//! are retried with exponential backoff and full jitter; anything else, or
//! running out of retries, is a clear error. Each completion carries its
//! token usage, latency and number of attempts.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// How to reach and sample one model (a workflow's `[models.NAME]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    /// e.g. `http://127.0.0.1:30000/v1`
    pub base_url: String,
    pub model: String,
    /// The API key's value (read from the configured environment variable
    /// where the stage runs; never written into job files).
    #[serde(skip)]
    pub api_key: Option<String>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub max_tokens: Option<u32>,
    pub seed: Option<u64>,
    pub stop: Vec<String>,
    pub timeout: Duration,
    pub max_retries: u32,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
}

impl ModelConfig {
    pub fn new(base_url: impl Into<String>, model: impl Into<String>) -> ModelConfig {
        ModelConfig {
            base_url: base_url.into(),
            model: model.into(),
            api_key: None,
            temperature: None,
            top_p: None,
            max_tokens: None,
            seed: None,
            stop: Vec::new(),
            timeout: Duration::from_secs(600),
            max_retries: 8,
            backoff_initial: Duration::from_millis(500),
            backoff_max: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub role: String,
    pub content: String,
}

impl Message {
    pub fn new(role: &str, content: impl Into<String>) -> Message {
        Message { role: role.to_string(), content: content.into() }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    pub content: String,
    pub finish_reason: Option<String>,
    pub usage: Usage,
    pub latency: Duration,
    /// Requests made, the successful one included.
    pub attempts: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    #[error("{url}: gave up after {attempts} attempts; last error: {last}")]
    Exhausted { url: String, attempts: u32, last: String },
    #[error("{url}: HTTP {status}: {body}")]
    Rejected { url: String, status: u16, body: String },
    #[error("{url}: the reply is not a chat completion: {detail}")]
    Malformed { url: String, detail: String },
    #[error("{cause} at {url}")]
    Unreachable { url: String, cause: String },
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
}

/// What went wrong with a request, down to its cause: "connection
/// refused", "timed out", or the error's whole chain.
fn cause(e: &reqwest::Error) -> String {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    let mut chain = Vec::new();
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return io.kind().to_string();
        }
        chain.push(err.to_string());
        source = err.source();
    }
    if e.is_timeout() {
        return "timed out".into();
    }
    chain.dedup();
    chain.join(": ")
}

/// How long a probe of an endpoint may take.
pub const PROBE_DEADLINE: Duration = Duration::from_secs(10);

pub struct LlmClient {
    http: reqwest::Client,
    pub config: ModelConfig,
}

/// Installs the TLS crypto provider once per process (rustls with ring).
fn tls_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// Full jitter: uniform in [0, min(max, initial × 2^attempt)].
fn backoff(config: &ModelConfig, attempt: u32, seed: u64) -> Duration {
    let cap = config.backoff_initial.saturating_mul(1u32 << attempt.min(20)).min(config.backoff_max);
    let mut x = seed ^ 0x9E37_79B9_7F4A_7C15 ^ u64::from(attempt).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^= x >> 31;
    x = x.wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^= x >> 29;
    cap.mul_f64((x % 10_000) as f64 / 10_000.0)
}

impl LlmClient {
    pub fn new(config: ModelConfig) -> Result<LlmClient, LlmError> {
        tls_provider();
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(512)
            .build()
            .map_err(|e| LlmError::Client(e.to_string()))?;
        Ok(LlmClient { http, config })
    }

    fn url(&self) -> String {
        format!("{}/chat/completions", self.config.base_url.trim_end_matches('/'))
    }

    /// Whether the endpoint answers at all (any HTTP status will do), within
    /// `deadline`: a stage checks this before its rows start, so that a
    /// dead server fails it at once with the cause instead of after every
    /// row's retries.
    pub async fn probe(&self, deadline: Duration) -> Result<(), LlmError> {
        let base = self.config.base_url.trim_end_matches('/').to_string();
        let mut req = self.http.get(format!("{base}/models")).timeout(deadline);
        if let Some(key) = &self.config.api_key {
            req = req.bearer_auth(key);
        }
        match req.send().await {
            Ok(_) => Ok(()),
            Err(e) => Err(LlmError::Unreachable { url: base, cause: cause(&e) }),
        }
    }

    /// One chat completion, with retries. Each failed attempt is logged on
    /// stderr (a stage's log) with its cause.
    pub async fn chat(&self, messages: &[Message], extra_stop: &[&str]) -> Result<Completion, LlmError> {
        let c = &self.config;
        let mut body = json!({ "model": c.model, "messages": messages });
        let mut stop: Vec<String> = c.stop.clone();
        stop.extend(extra_stop.iter().map(|s| s.to_string()));
        if !stop.is_empty() {
            body["stop"] = json!(stop);
        }
        for (k, v) in [
            ("temperature", c.temperature.map(Value::from)),
            ("top_p", c.top_p.map(Value::from)),
            ("max_tokens", c.max_tokens.map(Value::from)),
            ("seed", c.seed.map(Value::from)),
        ] {
            if let Some(v) = v {
                body[k] = v;
            }
        }
        let url = self.url();
        let started = Instant::now();
        let seed = started.elapsed().as_nanos() as u64 ^ (messages.len() as u64) << 32 ^ u64::from(std::process::id());
        let mut last = String::new();
        for attempt in 0..=c.max_retries {
            if attempt > 0 {
                tokio::time::sleep(backoff(c, attempt - 1, seed)).await;
            }
            let mut req = self.http.post(&url).json(&body);
            if let Some(key) = &c.api_key {
                req = req.bearer_auth(key);
            }
            let resp = match req.send().await {
                Ok(r) => r,
                Err(e) => {
                    // Connect errors, timeouts and dropped connections: retry.
                    last = cause(&e);
                    retrying(&url, attempt, c.max_retries, &last);
                    continue;
                }
            };
            let status = resp.status().as_u16();
            let text = match resp.text().await {
                Ok(t) => t,
                Err(e) => {
                    last = cause(&e);
                    retrying(&url, attempt, c.max_retries, &last);
                    continue;
                }
            };
            if status == 429 || status >= 500 {
                last = format!("HTTP {status}: {}", text.chars().take(300).collect::<String>());
                retrying(&url, attempt, c.max_retries, &last);
                continue;
            }
            if status != 200 {
                return Err(LlmError::Rejected { url, status, body: text.chars().take(1000).collect() });
            }
            let v: Value = serde_json::from_str(&text)
                .map_err(|e| LlmError::Malformed { url: url.clone(), detail: e.to_string() })?;
            let choice = &v["choices"][0];
            let content = choice["message"]["content"].as_str().ok_or_else(|| LlmError::Malformed {
                url: url.clone(),
                detail: "no choices[0].message.content".into(),
            })?;
            return Ok(Completion {
                content: content.to_string(),
                finish_reason: choice["finish_reason"].as_str().map(str::to_string),
                usage: Usage {
                    prompt_tokens: v["usage"]["prompt_tokens"].as_u64().unwrap_or(0),
                    completion_tokens: v["usage"]["completion_tokens"].as_u64().unwrap_or(0),
                },
                latency: started.elapsed(),
                attempts: attempt + 1,
            });
        }
        Err(LlmError::Exhausted { url, attempts: c.max_retries + 1, last })
    }
}

fn retrying(url: &str, attempt: u32, max_retries: u32, what: &str) {
    if attempt < max_retries {
        swestar_vocab::progress!(
            "model {url}: attempt {} of {} failed ({what}); retrying",
            attempt + 1,
            max_retries + 1
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let mut c = ModelConfig::new("http://x", "m");
        c.backoff_initial = Duration::from_millis(100);
        c.backoff_max = Duration::from_secs(1);
        for attempt in 0..10 {
            let cap = Duration::from_millis(100 * (1 << attempt)).min(Duration::from_secs(1));
            let d = backoff(&c, attempt, 42);
            assert!(d <= cap, "{attempt}: {d:?} > {cap:?}");
        }
        let spread: std::collections::HashSet<Duration> = (0..20).map(|s| backoff(&c, 5, s)).collect();
        assert!(spread.len() > 10, "jitter spreads retries");
    }
}
