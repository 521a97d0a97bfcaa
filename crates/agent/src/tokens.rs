//! Token counting for masking and accounting: a real tokenizer (the
//! model's `tokenizer.json`, through the `tokenizers` crate) when the model
//! config names one, else an estimate of four characters a token, with the
//! server's reported usage recorded beside it. Prompts are counted as the
//! model sees them: ChatML, as Qwen's chat template renders it.

use std::path::Path;

pub enum TokenCounter {
    Tokenizer(Box<Counted>),
    Estimate,
}

/// A tokenizer with the tokens of the training framing around a message
/// counted once (they are counted for every message of every sample).
pub struct Counted {
    pub tokenizer: tokenizers::Tokenizer,
    /// `"{role}\n"` for the usual roles.
    headers: [(&'static str, usize); 3],
    newline: usize,
}

impl std::ops::Deref for Counted {
    type Target = tokenizers::Tokenizer;
    fn deref(&self) -> &tokenizers::Tokenizer {
        &self.tokenizer
    }
}

impl Counted {
    fn new(tokenizer: tokenizers::Tokenizer) -> Counted {
        let count = |t: &str| tokenizer.encode_fast(t, false).map(|e| e.len()).unwrap_or(0);
        let headers = ["system", "user", "assistant"].map(|r| (r, count(&format!("{r}\n"))));
        let newline = count("\n");
        Counted { tokenizer, headers, newline }
    }

    fn count(&self, text: &str) -> usize {
        self.tokenizer.encode_fast(text, false).map(|e| e.len()).unwrap_or(0)
    }

    fn header(&self, role: &str) -> usize {
        match self.headers.iter().find(|(r, _)| *r == role) {
            Some((_, n)) => *n,
            None => self.count(&format!("{role}\n")),
        }
    }
}

impl std::fmt::Debug for TokenCounter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenCounter::Tokenizer(_) => f.write_str("TokenCounter::Tokenizer"),
            TokenCounter::Estimate => f.write_str("TokenCounter::Estimate"),
        }
    }
}

/// One message as ChatML.
pub fn chatml_message(role: &str, content: &str) -> String {
    format!("<|im_start|>{role}\n{content}<|im_end|>\n")
}

/// A whole prompt as ChatML, ending where the assistant's reply begins.
pub fn chatml_prompt<'a>(messages: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut out: String = messages.into_iter().map(|(r, c)| chatml_message(r, c)).collect();
    out.push_str("<|im_start|>assistant\n");
    out
}

impl TokenCounter {
    pub fn from_file(path: &Path) -> Result<TokenCounter, String> {
        tokenizers::Tokenizer::from_file(path)
            .map(|t| TokenCounter::Tokenizer(Box::new(Counted::new(t))))
            .map_err(|e| format!("cannot load tokenizer {}: {e}", path.display()))
    }

    /// Token ids of a text (special tokens written in it are recognized).
    pub fn encode(&self, text: &str) -> Vec<u32> {
        match self {
            TokenCounter::Tokenizer(t) => t.encode(text, false).map(|e| e.get_ids().to_vec()).unwrap_or_default(),
            // Stand-in ids for the estimate: one per four bytes, by content.
            TokenCounter::Estimate => text
                .as_bytes()
                .chunks(4)
                .map(|c| c.iter().fold(2166136261u32, |h, b| (h ^ u32::from(*b)).wrapping_mul(16777619)))
                .collect(),
        }
    }

    pub fn count(&self, text: &str) -> usize {
        match self {
            TokenCounter::Tokenizer(t) => t.count(text),
            TokenCounter::Estimate => text.len().div_ceil(4),
        }
    }

    /// Tokens one message takes in a prompt, framing included, counted
    /// piece by piece the way torchtune's Qwen2.5 tokenizer encodes a
    /// training sample: `<|im_start|>`, `"{role}\n"`, the content,
    /// `<|im_end|>`, `"\n"`. (Encoding the whole ChatML text at once can
    /// merge the header's newline with a content that starts with one.) A
    /// sample's tokens are the sum over its messages; torchtune's length
    /// of it is that minus one: the last (assistant) message has no
    /// `<|im_end|>` and `"\n"`, and its end-of-sequence token is added.
    pub fn message(&self, role: &str, content: &str) -> usize {
        match self {
            TokenCounter::Tokenizer(t) => 2 + t.header(role) + t.count(content) + t.newline,
            TokenCounter::Estimate => self.count(&chatml_message(role, content)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_estimate_counts_four_characters_a_token() {
        let c = TokenCounter::Estimate;
        assert_eq!(c.count("abcdefgh"), 2);
        assert_eq!(c.encode("abcdefgh").len(), 2);
        assert_eq!(chatml_prompt([("user", "hi")]), "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n");
    }
}
