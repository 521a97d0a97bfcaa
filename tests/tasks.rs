//! The example task instances are what their files say: rebuilt from the
//! project and the bug list with real git and pytest, they match the
//! checked-in instances.jsonl (every FAIL_TO_PASS test really fails with
//! its bug and passes without it).

mod common;

#[test]
fn the_example_instances_are_current_and_real() {
    let python = common::python();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/tasks/build_instances.py");
    let out = std::process::Command::new(&python).arg(script).arg("--check").output().expect("python");
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/tasks/instances.jsonl")).unwrap();
    let instances: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(instances.len() >= 8);
    for i in &instances {
        assert!(!i["FAIL_TO_PASS"].as_array().unwrap().is_empty(), "{}", i["instance_id"]);
        assert!(i["patch"].as_str().unwrap().starts_with("diff --git a/"), "{}", i["instance_id"]);
        assert_eq!(i["base_commit"], instances[0]["base_commit"]);
    }
}
