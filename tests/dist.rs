//! What scripts/dist.sh builds for clusters (.ci/run builds it and names
//! the folder in SWESTAR_TEST_DIST): a binary that starts on glibc 2.17,
//! and a wheel that pip installs with no index, whose `swestar` command
//! runs the quickstart.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

fn dist() -> Option<PathBuf> {
    let dir = std::env::var_os("SWESTAR_TEST_DIST").map(PathBuf::from);
    if dir.is_none() {
        assert!(std::env::var_os("CI").is_none(), "CI sets SWESTAR_TEST_DIST (see .ci/run)");
        eprintln!("skipped: no portable build (SWESTAR_TEST_DIST, made by scripts/dist.sh)");
    }
    dir
}

fn one(dir: &Path, pick: impl Fn(&str) -> bool) -> PathBuf {
    let found: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| pick(&p.file_name().unwrap().to_string_lossy()))
        .collect();
    assert_eq!(found.len(), 1, "{found:?} in {}", dir.display());
    found[0].clone()
}

/// The highest `GLIBC_x.y[.z]` symbol version a binary needs, by objdump.
fn newest_glibc(binary: &Path) -> (u32, u32, u32) {
    let out = Command::new("objdump").arg("-T").arg(binary).output().expect("objdump (binutils, see .ci/run)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let versions: Vec<(u32, u32, u32)> = text
        .split(|c: char| c.is_whitespace() || c == '(' || c == ')')
        .filter_map(|w| w.strip_prefix("GLIBC_"))
        .filter_map(|v| {
            let n: Vec<u32> = v.split('.').map(|p| p.parse().ok()).collect::<Option<_>>()?;
            Some((n[0], *n.get(1).unwrap_or(&0), *n.get(2).unwrap_or(&0)))
        })
        .collect();
    assert!(versions.len() > 10, "a dynamically linked glibc binary: {text}");
    versions.into_iter().max().unwrap()
}

#[test]
fn the_binary_needs_glibc_2_17_at_most() {
    let Some(dir) = dist() else { return };
    let binary = one(&dir, |n| n.starts_with("swestar-") && n.ends_with("-x86_64-linux"));
    let newest = newest_glibc(&binary);
    assert!(newest <= (2, 17, 0), "{} needs GLIBC_{}.{}.{}", binary.display(), newest.0, newest.1, newest.2);
    let out = Command::new(&binary).arg("--version").output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), format!("swestar {}", env!("CARGO_PKG_VERSION")));
}

#[test]
fn the_wheel_installs_offline_and_runs_the_quickstart() {
    let Some(dir) = dist() else { return };
    let wheel = one(&dir, |n| n.ends_with(".whl"));
    let name = wheel.file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.contains("manylinux_2_17_x86_64") || name.contains("manylinux2014_x86_64"), "{name}");
    let tmp = tempfile::tempdir().unwrap();
    let venv = tmp.path().join("venv");
    let ok = Command::new(common::python()).args(["-m", "venv"]).arg(&venv).status().unwrap();
    assert!(ok.success());
    let out = Command::new(venv.join("bin/pip"))
        .args(["install", "--no-index", "--disable-pip-version-check", "--find-links"])
        .arg(&dir)
        .arg("swestar")
        .env("PIP_CONFIG_FILE", "/dev/null")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let installed = venv.join("bin/swestar");
    assert!(newest_glibc(&installed) <= (2, 17, 0));
    let quickstart = concat!(env!("CARGO_MANIFEST_DIR"), "/workflows/quickstart.toml");
    // The quickstart's steps run `python3`: the venv's, as on a cluster.
    let path = format!("{}:{}", venv.join("bin").display(), std::env::var("PATH").unwrap_or_default());
    let out = Command::new(&installed)
        .args(["run", quickstart, "--store"])
        .arg(tmp.path().join("store"))
        .current_dir(tmp.path())
        .env("PATH", path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("5 committed"), "{stderr}");
}
