//! The binary's failure modes: each bad start gives one clear error line and
//! a non-zero exit code, and writes nothing.

use std::process::Command;

fn custodian(args: &[&str], envs: &[(&str, &str)], dir: &std::path::Path) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_custodian"));
    cmd.args(args).current_dir(dir).env_remove("DATABASE_URL");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn stderr_line(out: &std::process::Output) -> String {
    let text = String::from_utf8_lossy(&out.stderr).to_string();
    let lines: Vec<&str> = text.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(lines.len(), 1, "exactly one error line: {text}");
    lines[0].to_owned()
}

#[test]
fn malformed_config_names_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("c.toml"),
        "[server]\nmax_body_bytes = \"lots\"\n",
    )
    .unwrap();
    let out = custodian(&["--config", "c.toml", "migrate"], &[], dir.path());
    assert!(!out.status.success());
    assert!(stderr_line(&out).contains("server.max_body_bytes"));
    assert!(
        !dir.path().join("custodian-data").exists(),
        "nothing written"
    );
}

#[test]
fn unknown_setting_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = custodian(
        &["migrate"],
        &[("CUSTODIAN_SERVER__LISTN", "1")],
        dir.path(),
    );
    assert!(!out.status.success());
    assert!(stderr_line(&out).contains("listn"));
}

#[test]
fn unreachable_database_is_one_line_without_password() {
    let dir = tempfile::tempdir().unwrap();
    let out = custodian(
        &["migrate"],
        &[
            ("DATABASE_URL", "postgres://u:hunter2@127.0.0.1:1/nope"),
            ("CUSTODIAN_DATABASE__CONNECT_TIMEOUT_SECS", "2"),
        ],
        dir.path(),
    );
    assert!(!out.status.success());
    let line = stderr_line(&out);
    assert!(line.contains("cannot connect"), "{line}");
    assert!(!line.contains("hunter2"), "{line}");
}

#[test]
fn unusable_data_dir_is_one_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("file"), b"x").unwrap();
    let out = custodian(
        &["migrate"],
        &[("CUSTODIAN_DATA_DIR", "file/data")],
        dir.path(),
    );
    assert!(!out.status.success());
    assert!(stderr_line(&out).contains("data_dir"));
}

#[test]
fn migrate_on_a_bare_directory_works() {
    let dir = tempfile::tempdir().unwrap();
    let out = custodian(&["migrate"], &[], dir.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dir.path().join("custodian-data/custodian.db").exists());
}
