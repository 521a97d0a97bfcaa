//! What a poll means for one shard: the pure decision table behind the
//! SLURM backend. It sees what the poll saw (the shard's exit-code file,
//! whether its shard file exists, the scheduler's state) and what the
//! backend remembers of the shard (seen active, misses, when it ended),
//! and says wait, done, failed or retry. No I/O and no clock of its own, so
//! every row of the table is a unit test.

use std::time::{Duration, Instant};

use super::poll::JobState;
use super::Mode;

/// How long a job stopped by a signal may wait for the scheduler to say
/// why (accounting lags) before the signal alone decides.
pub const SIGNAL_GRACE: Duration = Duration::from_secs(30);
/// How long a shared file system gets to show an ended job's exit file.
pub const EXIT_FILE_GRACE: Duration = Duration::from_secs(15);
/// How long accounting may not list an adopted job before it counts as lost.
pub const ADOPTED_GRACE: Duration = Duration::from_secs(120);

/// What one poll observed of a shard.
#[derive(Debug, Clone, Copy)]
pub struct Seen<'a> {
    /// The exit status its job script wrote, if the file is there.
    pub exit: Option<i32>,
    /// The finished shard file exists.
    pub shard_file: bool,
    /// The scheduler's state of its job or array task, if listed.
    pub state: Option<&'a JobState>,
    pub mode: Mode,
    /// The job (or array) that runs it, for messages.
    pub job: u64,
}

/// What the backend remembers of a shard between polls.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Watch {
    /// Seen queued or running at least once (squeue mode: vanishing then
    /// means the job ended).
    pub seen: bool,
    pub misses: u32,
    /// When a poll first saw it ended (or missing, for adopted jobs).
    pub ended_at: Option<Instant>,
    /// Submitted by an earlier orchestrator of this store and taken over.
    pub adopted: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Wait,
    Done,
    Failed(String),
    /// Lost to the cluster: resubmit (the state that lost it, if known).
    Retry(Option<JobState>),
}

/// The decision for one shard at `now`; updates the shard's `watch`.
pub fn decide(seen: Seen<'_>, watch: &mut Watch, now: Instant) -> Verdict {
    let state = seen.state;
    if state.is_some_and(JobState::is_active) {
        watch.seen = true;
    }
    let since_end = |w: &mut Watch| now.duration_since(*w.ended_at.get_or_insert(now));
    match (seen.exit, state) {
        (Some(0), _) if seen.shard_file => Verdict::Done,
        (Some(0), _) => Verdict::Failed("the job exited 0 but its shard file is missing".into()),
        (Some(_), Some(s)) if s.is_retryable() => Verdict::Retry(Some(s.clone())),
        // Stopped by a signal while the scheduler has not said why yet
        // (accounting lags): its final state decides retry or failure.
        (Some(130 | 137 | 143), st) if st.is_none_or(JobState::is_active) && since_end(watch) < SIGNAL_GRACE => {
            if seen.mode == Mode::Squeue && st.is_none() {
                // squeue cannot say why a job left the queue: a signal is taken as lost.
                Verdict::Retry(None)
            } else {
                Verdict::Wait
            }
        }
        (Some(code), _) => Verdict::Failed(format!("stage failed (exit status {code})")),
        (None, Some(s)) if s.is_active() => Verdict::Wait,
        (None, Some(s)) if s.is_retryable() => Verdict::Retry(Some(s.clone())),
        (None, Some(s)) => {
            if since_end(watch) > EXIT_FILE_GRACE {
                Verdict::Failed(format!("job {} ended {} without writing its exit-code file", seen.job, s.name()))
            } else {
                Verdict::Wait
            }
        }
        (None, None) if watch.adopted && !watch.seen => {
            // An adopted job the scheduler does not list: lost once squeue
            // misses it twice, or accounting (which lags behind submissions)
            // has not listed it for two minutes.
            watch.misses += 1;
            let lost = match seen.mode {
                Mode::Squeue => watch.misses >= 2,
                Mode::Sacct => since_end(watch) > ADOPTED_GRACE,
            };
            if lost {
                Verdict::Retry(None)
            } else {
                Verdict::Wait
            }
        }
        (None, None) => match seen.mode {
            // Accounting lags behind submission: not yet listed.
            Mode::Sacct => Verdict::Wait,
            Mode::Squeue if watch.seen || watch.misses >= 2 => Verdict::Retry(None),
            Mode::Squeue => {
                watch.misses += 1;
                Verdict::Wait
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use JobState::*;

    struct Row {
        exit: Option<i32>,
        shard_file: bool,
        state: Option<JobState>,
        mode: Mode,
        watch: Watch,
        /// Seconds since the watch's `ended_at` (when it is set).
        ended_ago: Option<u64>,
        want: Verdict,
    }

    fn row(exit: Option<i32>, state: Option<JobState>, mode: Mode, want: Verdict) -> Row {
        Row { exit, shard_file: false, state, mode, watch: Watch::default(), ended_ago: None, want }
    }

    fn check(rows: Vec<Row>) {
        for (i, r) in rows.into_iter().enumerate() {
            let now = Instant::now() + Duration::from_secs(1000);
            let mut watch = r.watch.clone();
            watch.ended_at = r.ended_ago.map(|s| now - Duration::from_secs(s));
            let seen = Seen { exit: r.exit, shard_file: r.shard_file, state: r.state.as_ref(), mode: r.mode, job: 7 };
            assert_eq!(decide(seen, &mut watch, now), r.want, "row {i}: exit {:?} state {:?}", r.exit, r.state);
        }
    }

    fn failed(s: &str) -> Verdict {
        Verdict::Failed(s.into())
    }

    #[test]
    fn the_exit_file_is_the_final_word_unless_the_cluster_lost_the_job() {
        use Mode::*;
        check(vec![
            Row { shard_file: true, ..row(Some(0), Some(Completed), Sacct, Verdict::Done) },
            Row { shard_file: true, ..row(Some(0), None, Squeue, Verdict::Done) },
            row(Some(0), Some(Completed), Sacct, failed("the job exited 0 but its shard file is missing")),
            row(Some(1), Some(Failed), Sacct, failed("stage failed (exit status 1)")),
            row(Some(3), None, Squeue, failed("stage failed (exit status 3)")),
            row(Some(137), Some(Timeout), Sacct, Verdict::Retry(Some(Timeout))),
            row(Some(143), Some(Preempted), Sacct, Verdict::Retry(Some(Preempted))),
            row(Some(1), Some(NodeFail), Sacct, Verdict::Retry(Some(NodeFail))),
            // A signal with no reason yet: wait for accounting, within the grace.
            row(Some(143), Some(Running), Sacct, Verdict::Wait),
            row(Some(130), None, Sacct, Verdict::Wait),
            Row { ended_ago: Some(31), ..row(Some(143), None, Sacct, failed("stage failed (exit status 143)")) },
            // squeue never says why: a signal with the job gone is lost.
            row(Some(137), None, Squeue, Verdict::Retry(None)),
            row(Some(143), Some(Cancelled), Sacct, failed("stage failed (exit status 143)")),
            row(Some(137), Some(OutOfMemory), Sacct, failed("stage failed (exit status 137)")),
        ]);
    }

    #[test]
    fn without_an_exit_file_the_scheduler_state_decides() {
        use Mode::*;
        check(vec![
            row(None, Some(Pending), Sacct, Verdict::Wait),
            row(None, Some(Running), Squeue, Verdict::Wait),
            row(None, Some(Timeout), Sacct, Verdict::Retry(Some(Timeout))),
            row(None, Some(BootFail), Sacct, Verdict::Retry(Some(BootFail))),
            // Ended without its exit file: the file system gets a moment.
            row(None, Some(Failed), Sacct, Verdict::Wait),
            Row { ended_ago: Some(10), ..row(None, Some(Cancelled), Sacct, Verdict::Wait) },
            Row {
                ended_ago: Some(16),
                ..row(None, Some(Cancelled), Sacct, failed("job 7 ended CANCELLED without writing its exit-code file"))
            },
            // Not listed: accounting lags, squeue misses twice before it counts.
            row(None, None, Sacct, Verdict::Wait),
            row(None, None, Squeue, Verdict::Wait),
            Row { watch: Watch { misses: 2, ..Watch::default() }, ..row(None, None, Squeue, Verdict::Retry(None)) },
            Row { watch: Watch { seen: true, ..Watch::default() }, ..row(None, None, Squeue, Verdict::Retry(None)) },
        ]);
    }

    #[test]
    fn an_adopted_job_that_is_never_listed_is_lost_after_a_grace() {
        use Mode::*;
        let adopted = |misses| Watch { adopted: true, misses, ..Watch::default() };
        check(vec![
            Row { watch: adopted(0), ..row(None, None, Squeue, Verdict::Wait) },
            Row { watch: adopted(1), ..row(None, None, Squeue, Verdict::Retry(None)) },
            Row { watch: adopted(5), ended_ago: Some(60), ..row(None, None, Sacct, Verdict::Wait) },
            Row { watch: adopted(5), ended_ago: Some(121), ..row(None, None, Sacct, Verdict::Retry(None)) },
            // Once listed it is an ordinary job.
            Row {
                watch: Watch { adopted: true, seen: true, ..Watch::default() },
                ..row(None, None, Sacct, Verdict::Wait)
            },
        ]);
    }

    #[test]
    fn a_poll_remembers_what_it_saw() {
        let now = Instant::now();
        let mut w = Watch::default();
        let running = JobState::Running;
        let seen = Seen { exit: None, shard_file: false, state: Some(&running), mode: Mode::Squeue, job: 1 };
        assert_eq!(decide(seen, &mut w, now), Verdict::Wait);
        assert!(w.seen && w.ended_at.is_none());
        let gone = Seen { state: None, ..seen };
        assert_eq!(decide(gone, &mut w, now), Verdict::Retry(None), "seen, then vanished from squeue");
        let mut w = Watch::default();
        let failed = JobState::Failed;
        decide(Seen { state: Some(&failed), ..seen }, &mut w, now);
        assert_eq!(w.ended_at, Some(now), "the end is remembered from the first poll that saw it");
    }
}
