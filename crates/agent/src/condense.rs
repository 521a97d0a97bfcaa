//! Observation masking: before each model call, if the prompt plus a
//! reserve for the reply would not fit the context window, the oldest tool
//! observations are replaced by a short placeholder. The system prompt,
//! the task and the model's own turns are never touched, a masked
//! observation stays masked, the latest observation (what the next turn
//! answers) is never masked, and neither is one no longer than the
//! placeholder (masking it would not save a token).
//!
//! Two policies. `Fit` masks just enough to fit, as OpenHands' observation
//! masking does; every later call then changes the prompt early again, so
//! an inference server's prefix cache is invalidated turn after turn.
//! `Block` (the default) masks down to a low-water mark once over budget,
//! so the prompt prefix stays byte-identical for many turns afterwards.

/// What a message is, as masking sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    System,
    Task,
    Assistant,
    Observation,
}

/// One message of the prompt with its token counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Msg {
    pub role: Role,
    pub tokens: usize,
    /// Tokens once replaced by the placeholder.
    pub masked_tokens: usize,
    pub masked: bool,
}

impl Msg {
    pub fn cost(&self) -> usize {
        if self.masked {
            self.masked_tokens
        } else {
            self.tokens
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "policy")]
pub enum Policy {
    Fit,
    /// Once over budget, mask down to `low_water` × window.
    Block {
        low_water: f64,
    },
}

/// Where `block` masks down to, as a fraction of the window.
pub const DEFAULT_LOW_WATER: f64 = 0.7;

impl Default for Policy {
    fn default() -> Policy {
        Policy::Block { low_water: DEFAULT_LOW_WATER }
    }
}

/// The context window and the tokens kept free for the reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Budget {
    pub window: usize,
    pub reserve: usize,
}

/// The placeholder an observation is replaced with.
/// A context window when none is given, in tokens: Qwen2.5-Coder's
/// native one, the students' and the teachers' of the reference run.
pub const DEFAULT_WINDOW: usize = 32768;

/// Tokens kept free for the model's reply when none is given.
pub const DEFAULT_REPLY_RESERVE: usize = 2048;

pub const PLACEHOLDER: &str = "<MASKED>Old tool output omitted to fit the context window.</MASKED>";

/// The prompt's size in tokens.
pub fn total(msgs: &[Msg]) -> usize {
    msgs.iter().map(Msg::cost).sum()
}

/// Masks observations, oldest first, as the policy says. Returns how many
/// were newly masked; the prompt may still not fit when nothing is left to
/// mask (the caller then cuts the latest observation, see `episode`, or
/// ends the episode as context-exhausted).
pub fn mask(msgs: &mut [Msg], budget: Budget, policy: Policy) -> usize {
    let limit = budget.window.saturating_sub(budget.reserve);
    let mut size = total(msgs);
    if size <= limit {
        return 0;
    }
    let target = match policy {
        Policy::Fit => limit,
        Policy::Block { low_water } => ((budget.window as f64 * low_water) as usize).min(limit),
    };
    let mut masked = 0;
    let latest = msgs.len().checked_sub(1).filter(|&i| msgs[i].role == Role::Observation);
    for (i, m) in msgs.iter_mut().enumerate() {
        if size <= target {
            break;
        }
        if m.role == Role::Observation && !m.masked && Some(i) != latest && m.tokens > m.masked_tokens {
            size = size - m.tokens + m.masked_tokens;
            m.masked = true;
            masked += 1;
        }
    }
    masked
}

/// Tokens a perfect prefix cache must recompute for `next` after `prev`:
/// everything from the first position where they differ.
pub fn recompute<T: PartialEq>(prev: &[T], next: &[T]) -> usize {
    let common = prev.iter().zip(next).take_while(|(a, b)| a == b).count();
    next.len() - common
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(role: Role, tokens: usize) -> Msg {
        Msg { role, tokens, masked_tokens: 10, masked: false }
    }

    fn prompt(observations: &[usize]) -> Vec<Msg> {
        let mut v = vec![msg(Role::System, 500), msg(Role::Task, 300)];
        for &o in observations {
            v.push(msg(Role::Assistant, 50));
            v.push(msg(Role::Observation, o));
        }
        v
    }

    #[test]
    fn nothing_is_masked_while_the_prompt_fits() {
        let mut p = prompt(&[100, 100]);
        assert_eq!(mask(&mut p, Budget { window: 2000, reserve: 500 }, Policy::Fit), 0);
        assert!(p.iter().all(|m| !m.masked));
    }

    #[test]
    fn fit_masks_oldest_observations_just_until_it_fits() {
        let mut p = prompt(&[400, 400, 400, 400]);
        // 800 + 4 × 450 = 2600 > 2000 - 200; each mask saves 390: three are needed.
        assert_eq!(mask(&mut p, Budget { window: 2000, reserve: 200 }, Policy::Fit), 3);
        let masked: Vec<bool> = p.iter().filter(|m| m.role == Role::Observation).map(|m| m.masked).collect();
        assert_eq!(masked, [true, true, true, false]);
        assert!(total(&p) <= 1800);
        assert!(p.iter().filter(|m| m.role != Role::Observation).all(|m| !m.masked), "never the model's own turns");
    }

    #[test]
    fn block_masks_down_to_the_low_water_mark() {
        let mut p = prompt(&[400, 400, 400, 100]);
        // 2300 tokens: fitting 1800 needs two masks; the low-water mark
        // (1200) needs the third too (the latest is never masked).
        let mut fit = p.clone();
        assert_eq!(mask(&mut fit, Budget { window: 2000, reserve: 200 }, Policy::Fit), 2);
        let n = mask(&mut p, Budget { window: 2000, reserve: 200 }, Policy::Block { low_water: 0.6 });
        assert_eq!(n, 3);
        assert!(total(&p) <= 1200, "{}", total(&p));
    }

    #[test]
    fn the_latest_observation_and_short_ones_are_never_masked() {
        // The second observation is shorter than the placeholder (10).
        let mut p = prompt(&[400, 8, 400, 400]);
        let n = mask(&mut p, Budget { window: 1000, reserve: 0 }, Policy::Fit);
        let masked: Vec<bool> = p.iter().filter(|m| m.role == Role::Observation).map(|m| m.masked).collect();
        assert_eq!(masked, [true, false, true, false], "{n}");
        assert!(total(&p) > 1000, "still over: the caller cuts the latest one");
    }

    #[test]
    fn when_nothing_is_left_to_mask_the_prompt_stays_over_budget() {
        let mut p = vec![msg(Role::System, 3000), msg(Role::Task, 100)];
        assert_eq!(mask(&mut p, Budget { window: 2000, reserve: 100 }, Policy::Fit), 0);
        assert!(total(&p) > 1900);
    }

    #[test]
    fn recompute_counts_everything_after_the_first_difference() {
        assert_eq!(recompute(&[1, 2, 3], &[1, 2, 3, 4, 5]), 2);
        assert_eq!(recompute(&[1, 2, 3], &[1, 9, 3, 4]), 3);
        assert_eq!(recompute::<u32>(&[], &[1, 2]), 2);
    }

    /// Simulates an episode: each turn appends an assistant message and an
    /// observation, masks, and counts what a prefix cache recomputes.
    fn episode(policy: Policy, turns: usize) -> (usize, usize) {
        let budget = Budget { window: 8000, reserve: 1000 };
        let mut msgs = prompt(&[]);
        let mut prev: Vec<(usize, bool)> = Vec::new();
        let (mut recomputed, mut masked) = (0, 0);
        for t in 0..turns {
            msgs.push(msg(Role::Assistant, 60));
            msgs.push(msg(Role::Observation, 300 + (t * 37) % 400));
            masked += mask(&mut msgs, budget, policy);
            // Per-token identity: (message index, masked) repeated per token.
            let tokens: Vec<(usize, bool)> =
                msgs.iter().enumerate().flat_map(|(i, m)| std::iter::repeat_n((i, m.masked), m.cost())).collect();
            recomputed += recompute(&prev, &tokens);
            prev = tokens;
        }
        (recomputed, masked)
    }

    #[test]
    fn block_recomputes_far_fewer_prompt_tokens_than_fit() {
        let (fit, fit_masked) = episode(Policy::Fit, 120);
        let (block, block_masked) = episode(Policy::Block { low_water: 0.7 }, 120);
        assert!(fit_masked > 0 && block_masked >= fit_masked);
        assert!(block * 2 < fit, "block {block} vs fit {fit}");
    }
}
