//! Job states from `sacct` (accounting) or `squeue` (no accounting), parsed
//! from their parsable outputs. One call per poll covers every job of a run
//! (they share the run id as job name).

use std::collections::HashMap;

/// A SLURM job state, as far as swestar acts on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobState {
    Pending,
    Running,
    Completed,
    Failed,
    Cancelled,
    Timeout,
    Preempted,
    NodeFail,
    BootFail,
    OutOfMemory,
    Other(String),
}

impl JobState {
    pub fn parse(s: &str) -> JobState {
        // "CANCELLED by 0" → CANCELLED; "RUNNING+" style suffixes do not occur with -P.
        match s.split_whitespace().next().unwrap_or("") {
            "PENDING" | "REQUEUED" | "REQUEUE_HOLD" | "REQUEUE_FED" | "RESV_DEL_HOLD" | "SUSPENDED" | "RESIZING" => {
                JobState::Pending
            }
            "RUNNING" | "CONFIGURING" | "COMPLETING" | "STAGE_OUT" | "SIGNALING" => JobState::Running,
            "COMPLETED" => JobState::Completed,
            "FAILED" => JobState::Failed,
            "CANCELLED" | "REVOKED" => JobState::Cancelled,
            "TIMEOUT" | "DEADLINE" => JobState::Timeout,
            "PREEMPTED" => JobState::Preempted,
            "NODE_FAIL" => JobState::NodeFail,
            "BOOT_FAIL" => JobState::BootFail,
            "OUT_OF_MEMORY" => JobState::OutOfMemory,
            other => JobState::Other(other.to_string()),
        }
    }

    /// Still queued or running.
    pub fn is_active(&self) -> bool {
        matches!(self, JobState::Pending | JobState::Running)
    }

    /// Lost to the cluster rather than to the stage: worth resubmitting.
    pub fn is_retryable(&self) -> bool {
        matches!(self, JobState::Timeout | JobState::Preempted | JobState::NodeFail | JobState::BootFail)
    }

    /// The node itself failed: keep it out of resubmissions.
    pub fn blames_node(&self) -> bool {
        matches!(self, JobState::NodeFail | JobState::BootFail)
    }

    pub fn name(&self) -> &str {
        match self {
            JobState::Pending => "PENDING",
            JobState::Running => "RUNNING",
            JobState::Completed => "COMPLETED",
            JobState::Failed => "FAILED",
            JobState::Cancelled => "CANCELLED",
            JobState::Timeout => "TIMEOUT",
            JobState::Preempted => "PREEMPTED",
            JobState::NodeFail => "NODE_FAIL",
            JobState::BootFail => "BOOT_FAIL",
            JobState::OutOfMemory => "OUT_OF_MEMORY",
            JobState::Other(s) => s,
        }
    }
}

/// One job or array task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskState {
    pub job: u64,
    /// The array index; `None` for a job that is not an array.
    pub task: Option<u32>,
    pub state: JobState,
    pub node: Option<String>,
}

/// States by (job id, array index).
pub type States = HashMap<(u64, Option<u32>), TaskState>;

/// Parses `sacct -X -P -n -o JobID,State,ExitCode,NodeList`.
pub fn parse_sacct(text: &str) -> Vec<TaskState> {
    text.lines()
        .filter_map(|line| {
            let mut f = line.split('|');
            let (id, state, _exit, nodes) = (f.next()?, f.next()?, f.next()?, f.next().unwrap_or(""));
            Some((id, state, nodes))
        })
        .flat_map(|(id, state, nodes)| expand(id, JobState::parse(state), node_of(nodes)))
        .collect()
}

/// Sums `sacct -X -P -n -o JobID,ElapsedRaw,NNodes,AllocCPUS` into
/// (node-seconds, CPU-seconds). A pending array's summary line (`12_[3-7]`)
/// has run nowhere yet and adds nothing.
pub fn parse_usage(text: &str) -> (f64, f64) {
    let (mut node_s, mut cpu_s) = (0.0, 0.0);
    for line in text.lines() {
        let f: Vec<&str> = line.split('|').collect();
        let [_id, elapsed, nodes, cpus, ..] = f.as_slice() else { continue };
        let num = |s: &str| s.trim().parse::<f64>().unwrap_or(0.0);
        node_s += num(elapsed) * num(nodes);
        cpu_s += num(elapsed) * num(cpus);
    }
    (node_s, cpu_s)
}

/// Parses `squeue -h -r -o %i|%T|%N`.
pub fn parse_squeue(text: &str) -> Vec<TaskState> {
    text.lines()
        .filter_map(|line| {
            let mut f = line.split('|');
            let (id, state, nodes) = (f.next()?, f.next()?, f.next().unwrap_or(""));
            Some(expand(id, JobState::parse(state), node_of(nodes)))
        })
        .flatten()
        .collect()
}

fn node_of(nodes: &str) -> Option<String> {
    let n = nodes.trim();
    (!n.is_empty() && n != "None assigned" && n != "(null)").then(|| n.to_string())
}

/// `12`, `12_3`, `12_[4-7%2]`, `12_[1,3-5]` → one entry per job or task.
fn expand(id: &str, state: JobState, node: Option<String>) -> Vec<TaskState> {
    let id = id.trim();
    let one = |job: u64, task: Option<u32>| TaskState { job, task, state: state.clone(), node: node.clone() };
    let Some((job, rest)) = id.split_once('_') else {
        return id.parse().map(|j| vec![one(j, None)]).unwrap_or_default();
    };
    let Ok(job) = job.parse::<u64>() else {
        return Vec::new();
    };
    if let Ok(task) = rest.parse::<u32>() {
        return vec![one(job, Some(task))];
    }
    let inner = rest.trim_start_matches('[').trim_end_matches(']');
    let inner = inner.split('%').next().unwrap_or("");
    let mut out = Vec::new();
    for part in inner.split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<u32>(), b.parse::<u32>()) {
                    out.extend((a..=b).map(|t| one(job, Some(t))));
                }
            }
            None => {
                if let Ok(t) = part.parse::<u32>() {
                    out.push(one(job, Some(t)));
                }
            }
        }
    }
    out
}

/// `--array` spec for a set of indices: `0-7`, `1,3,5-6`, with `%P`.
pub fn array_spec(indices: &[u32], max_parallel: Option<u32>) -> String {
    let mut sorted = indices.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut parts = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = start;
        while i + 1 < sorted.len() && sorted[i + 1] == end + 1 {
            i += 1;
            end = sorted[i];
        }
        parts.push(if start == end { start.to_string() } else { format!("{start}-{end}") });
        i += 1;
    }
    let mut spec = parts.join(",");
    if let Some(p) = max_parallel {
        spec.push_str(&format!("%{p}"));
    }
    spec
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/slurm/");

    fn fixture(name: &str) -> String {
        std::fs::read_to_string(format!("{FIXTURES}{name}")).unwrap()
    }

    #[test]
    fn sacct_pending_arrays_expand_and_cancelled_by_is_cancelled() {
        // Recorded from SLURM 22.05.8 with accounting (slurmdbd).
        let s = parse_sacct(&fixture("sacct-pending-array.txt"));
        assert_eq!(s[0], TaskState { job: 10, task: None, state: JobState::Cancelled, node: None });
        assert_eq!(s[1].state, JobState::Pending);
        assert_eq!(s[2], TaskState { job: 9, task: Some(0), state: JobState::Completed, node: Some("vm".into()) });
        let pending: Vec<Option<u32>> = s[3..].iter().map(|t| t.task).collect();
        assert_eq!(pending, [Some(1), Some(2), Some(3), Some(4), Some(5)]);
        assert!(s[3..].iter().all(|t| t.state == JobState::Pending && t.job == 9));
    }

    #[test]
    fn sacct_final_states() {
        let s = parse_sacct(&fixture("sacct-final.txt"));
        let by: States = s.into_iter().map(|t| ((t.job, t.task), t)).collect();
        assert_eq!(by[&(11, None)].state, JobState::Timeout);
        assert!(by[&(11, None)].state.is_retryable());
        assert_eq!(by[&(9, Some(1))].state, JobState::Failed);
        assert!(!by[&(9, Some(1))].state.is_retryable());
        assert_eq!(by[&(9, Some(5))].state, JobState::Completed);
        let running = parse_sacct(&fixture("sacct-running-array.txt"));
        assert!(running.iter().all(|t| t.state == JobState::Running && t.node.as_deref() == Some("vm")));
    }

    #[test]
    fn usage_sums_elapsed_times_nodes_and_cpus_over_array_tasks() {
        let text = "40_0|61|2|8\n40_1|59|2|8\n40_[2-3]|0|2|8\n41|30|1|4\nweird line\n";
        assert_eq!(parse_usage(text), (61.0 * 2.0 + 59.0 * 2.0 + 30.0, (61.0 + 59.0) * 8.0 + 120.0));
        assert_eq!(parse_usage(""), (0.0, 0.0));
    }

    #[test]
    fn squeue_outputs() {
        let s = parse_squeue(&fixture("squeue-running-array.txt"));
        assert_eq!(s.len(), 4);
        assert_eq!(s[2], TaskState { job: 23, task: Some(0), state: JobState::Running, node: Some("vm".into()) });
        assert_eq!(s[0].state, JobState::Pending);
        assert_eq!(s[0].node, None);
        let p = parse_squeue(&fixture("squeue-pending-array.txt"));
        assert_eq!(p.last().unwrap(), &TaskState { job: 11, task: None, state: JobState::Pending, node: None });
    }

    #[test]
    fn ranges_and_specs() {
        let t = expand("5_[1,3-4%2]", JobState::Pending, None);
        assert_eq!(t.iter().map(|x| x.task.unwrap()).collect::<Vec<_>>(), [1, 3, 4]);
        assert_eq!(array_spec(&[0, 1, 2, 3], Some(2)), "0-3%2");
        assert_eq!(array_spec(&[5, 1, 3, 6], None), "1,3,5-6");
        assert_eq!(JobState::parse("NODE_FAIL"), JobState::NodeFail);
        assert!(JobState::NodeFail.blames_node() && !JobState::Timeout.blames_node());
    }
}
