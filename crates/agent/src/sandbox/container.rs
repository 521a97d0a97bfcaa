//! The containers of the `podman` and `apptainer` sandboxes: the commands
//! that start one, run a shell in it and stop it, their names, and the
//! sweep of containers a killed process left behind.

use std::path::Path;
use std::process::Command;

use super::{ContainerSpec, Isolation};

/// A running container of one episode.
#[derive(Debug)]
pub(super) struct Container {
    pub(super) engine: Isolation,
    pub(super) spec: ContainerSpec,
    pub(super) name: String,
}

impl Container {
    /// The command that starts it.
    pub(super) fn start_command(&self, image: &str, mount: Option<&Path>) -> Vec<String> {
        let s = &self.spec;
        let mut c = vec![s.program.clone()];
        match self.engine {
            Isolation::Podman => {
                c.extend(["run", "-d", "--name", &self.name, "-w", &s.workdir].map(String::from));
                c.extend(["--label".to_string(), format!("{OWNER_LABEL}={}", owner())]);
                if !s.network {
                    c.extend(["--network", "none"].map(String::from));
                }
                if let Some(m) = mount {
                    c.extend(["-v".to_string(), format!("{}:{}", m.display(), s.workdir)]);
                }
                c.extend(s.args.iter().cloned());
                c.extend([image, "sleep", "infinity"].map(String::from));
            }
            _ => {
                // Own PID namespace, clean environment, no home; writes to
                // the image go to a tmpfs overlay.
                c.extend(
                    ["instance", "start", "--containall", "--no-home", "--writable-tmpfs", "--pwd", &s.workdir]
                        .map(String::from),
                );
                if !s.network {
                    c.extend(["--net", "--network", "none"].map(String::from));
                }
                if let Some(m) = mount {
                    c.extend(["--bind".to_string(), format!("{}:{}", m.display(), s.workdir)]);
                }
                c.extend(s.args.iter().cloned());
                c.extend([image, &self.name].map(String::from));
            }
        }
        c
    }

    /// The command prefix that runs a program in the container at
    /// `workdir`, with `env` set (`interactive`: on a terminal).
    pub(super) fn exec_prefix(&self, env: &[(String, String)], interactive: bool) -> Vec<String> {
        let s = &self.spec;
        let mut c = vec![s.program.clone()];
        match self.engine {
            Isolation::Podman => {
                c.extend(["exec", if interactive { "-it" } else { "-i" }, "-w", &s.workdir].map(String::from));
                for (k, v) in env {
                    c.extend(["-e".to_string(), format!("{k}={v}")]);
                }
                c.push(self.name.clone());
            }
            _ => {
                c.extend(["exec", "--pwd", &s.workdir].map(String::from));
                for (k, v) in env {
                    c.extend(["--env".to_string(), format!("{k}={v}")]);
                }
                c.push(format!("instance://{}", self.name));
            }
        }
        c
    }

    pub(super) fn stop_command(&self) -> Vec<String> {
        let p = self.spec.program.clone();
        match self.engine {
            Isolation::Podman => vec![p, "rm".into(), "-f".into(), "-t".into(), "0".into(), self.name.clone()],
            _ => vec![p, "instance".into(), "stop".into(), "--force".into(), self.name.clone()],
        }
    }
}

/// The label naming the process that started a container, `HOST:PID`.
const OWNER_LABEL: &str = "swestar.owner";

fn owner() -> String {
    format!("{}:{}", hostname(), std::process::id())
}

/// Removes podman containers that swestar processes on this host started
/// and left behind when they were killed (SIGKILL, a node's OOM killer):
/// their owner process is gone. Returns the names removed.
pub fn sweep_stale(program: &str) -> Vec<String> {
    let format = format!("{{{{.Names}}}} {{{{index .Labels \"{OWNER_LABEL}\"}}}}");
    let filter = format!("label={OWNER_LABEL}");
    let Ok(out) = Command::new(program).args(["ps", "-a", "--filter", &filter, "--format", &format]).output() else {
        return Vec::new();
    };
    let host = hostname();
    let mut removed = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some((name, owner)) = line.split_once(' ') else { continue };
        let Some((h, pid)) = owner.rsplit_once(':') else { continue };
        let Ok(pid) = pid.trim().parse::<i32>() else { continue };
        let alive = unsafe { libc::kill(pid, 0) == 0 || *libc::__errno_location() == libc::EPERM };
        if h == host && !alive {
            let ok =
                Command::new(program).args(["rm", "-f", "-t", "0", name]).output().is_ok_and(|o| o.status.success());
            if ok {
                removed.push(name.to_string());
            }
        }
    }
    removed
}

/// A container name no other episode on any node uses.
pub(super) fn unique_name(instance_id: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let seed = format!(
        "{}-{}-{:?}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        std::time::SystemTime::now(),
        hostname()
    );
    let slug: String = instance_id
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c.to_ascii_lowercase() } else { '-' })
        .take(40)
        .collect();
    format!("swestar-{slug}-{}", &blake3::hash(seed.as_bytes()).to_hex()[..10])
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default().trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::Sandbox;

    fn container(engine: Isolation, program: &str) -> Container {
        Container { engine, spec: ContainerSpec::new(program), name: "swestar-x-1".into() }
    }

    #[test]
    fn podman_commands() {
        let c = container(Isolation::Podman, "podman");
        assert_eq!(
            c.start_command("localhost/img:1", None).join(" "),
            format!(
                "podman run -d --name swestar-x-1 -w /testbed --label swestar.owner={} --network none localhost/img:1 \
                 sleep infinity",
                owner()
            )
        );
        let mut net = container(Isolation::Podman, "podman");
        net.spec.network = true;
        net.spec.args = vec!["--memory=4g".into()];
        assert_eq!(
            net.start_command("img", Some(Path::new("/tmp/s/repo"))).join(" "),
            format!(
                "podman run -d --name swestar-x-1 -w /testbed --label swestar.owner={} -v /tmp/s/repo:/testbed \
                 --memory=4g img sleep infinity",
                owner()
            )
        );
        assert_eq!(
            c.exec_prefix(&[("A".into(), "1 2".into())], true),
            ["podman", "exec", "-it", "-w", "/testbed", "-e", "A=1 2", "swestar-x-1"]
        );
        assert_eq!(c.stop_command().join(" "), "podman rm -f -t 0 swestar-x-1");
    }

    #[test]
    fn apptainer_commands() {
        let c = container(Isolation::Apptainer, "apptainer");
        assert_eq!(
            c.start_command("/images/ledger.sif", Some(Path::new("/tmp/s/repo"))).join(" "),
            "apptainer instance start --containall --no-home --writable-tmpfs --pwd /testbed --net --network none \
             --bind /tmp/s/repo:/testbed /images/ledger.sif swestar-x-1"
        );
        assert_eq!(
            c.exec_prefix(&[("TERM".into(), "dumb".into())], true),
            ["apptainer", "exec", "--pwd", "/testbed", "--env", "TERM=dumb", "instance://swestar-x-1"]
        );
        assert_eq!(c.stop_command().join(" "), "apptainer instance stop --force swestar-x-1");
        let s = Sandbox {
            dir: tempfile::tempdir().unwrap(),
            host_repo: None,
            repo: "/testbed".into(),
            isolation: Isolation::Apptainer,
            container: Some(container(Isolation::Apptainer, "/opt/apptainer/bin/apptainer")),
        };
        let shell = s.shell_program(&[("PATH".into(), "/usr/bin".into()), ("LANG".into(), "C.UTF-8".into())]);
        assert_eq!(
            shell.join(" "),
            "/opt/apptainer/bin/apptainer exec --pwd /testbed --env LANG=C.UTF-8 --env TERM=dumb \
             instance://swestar-x-1 bash --norc --noprofile --noediting -i"
        );
        // Dropping it would run `instance stop`; there is no apptainer here.
        std::mem::forget(s);
    }

    #[test]
    fn names_are_unique_and_safe() {
        let a = unique_name("Owner__Repo.abc/def ghi");
        let b = unique_name("Owner__Repo.abc/def ghi");
        assert_ne!(a, b);
        assert!(a.starts_with("swestar-owner__repo-abc-def-ghi-"), "{a}");
        assert!(a.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
    }
}
