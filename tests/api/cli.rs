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

fn policies() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/policies").to_owned()
}

#[test]
fn config_file_from_the_environment_variable_is_read() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("c.toml"), "data_dir = \"elsewhere\"\n").unwrap();
    let out = custodian(&["migrate"], &[("CUSTODIAN_CONFIG", "c.toml")], dir.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dir.path().join("elsewhere/custodian.db").exists());
}

#[test]
fn bad_log_filter_variable_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = custodian(
        &["migrate"],
        &[("CUSTODIAN_LOG", "custodian=lots")],
        dir.path(),
    );
    assert!(!out.status.success());
    assert!(stderr_line(&out).contains("CUSTODIAN_LOG"));
    assert!(!dir.path().join("custodian-data").exists());
}

#[test]
fn toml_syntax_error_is_one_line_naming_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("c.toml"),
        "mode = \"development\"\n[server\n",
    )
    .unwrap();
    let out = custodian(&["--config", "c.toml", "migrate"], &[], dir.path());
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(text.trim().lines().count(), 1, "{text}");
    assert!(stderr_line(&out).contains("c.toml:2:"), "{text}");
}

#[test]
fn serve_without_policies_fails_before_any_side_effect() {
    let dir = tempfile::tempdir().unwrap();
    let out = custodian(&["serve", "--listen", "127.0.0.1:0"], &[], dir.path());
    assert!(!out.status.success());
    let line = stderr_line(&out);
    assert!(
        line.contains("policy_dir") && line.contains("CUSTODIAN_POLICY_DIR"),
        "{line}"
    );
    assert!(
        !dir.path().join("custodian-data").exists(),
        "no keys generated, no database migrated"
    );
}

#[test]
fn refused_postgres_connection_is_said_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let out = custodian(
        &["migrate"],
        &[
            ("DATABASE_URL", "postgres://u:hunter2@127.0.0.1:1/nope"),
            ("CUSTODIAN_DATABASE__CONNECT_TIMEOUT_SECS", "20"),
        ],
        dir.path(),
    );
    assert!(!out.status.success());
    let line = stderr_line(&out);
    assert!(line.contains("connection refused at 127.0.0.1:1"), "{line}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

#[test]
fn token_refuses_a_data_dir_without_the_servers_secret() {
    let dir = tempfile::tempdir().unwrap();
    let policy_dir = policies();
    let out = custodian(
        &["token", "--sub", "a", "--role", "support_agent"],
        &[("CUSTODIAN_POLICY_DIR", &policy_dir)],
        dir.path(),
    );
    assert!(!out.status.success());
    assert!(stderr_line(&out).contains("data_dir"));
    assert!(out.stdout.is_empty());
    assert!(!dir.path().join("custodian-data/dev-jwt.secret").exists());
}

#[test]
fn token_refuses_unknown_roles_and_prints_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let policy_dir = policies();
    let envs = [
        ("CUSTODIAN_POLICY_DIR", policy_dir.as_str()),
        (
            "CUSTODIAN_AUTH__DEV_HS256_SECRET",
            "0123456789abcdef0123456789abcdef0123456789abcdef",
        ),
    ];
    let out = custodian(
        &["token", "--sub", "a", "--role", "wizard"],
        &envs,
        dir.path(),
    );
    assert!(!out.status.success());
    assert!(stderr_line(&out).contains("--role wizard"));
    let out = custodian(
        &["token", "--sub", "a", "--role", "support_agent"],
        &envs,
        dir.path(),
    );
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).split('.').count(), 3);
    assert!(
        out.stderr.is_empty(),
        "no warnings on a CLI call: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn logs_to_a_file_have_no_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let out = custodian(&["migrate"], &[("CUSTODIAN_LOG", "debug")], dir.path());
    assert!(out.status.success());
    assert!(!out.stderr.is_empty(), "debug logging wrote something");
    assert!(!out.stderr.contains(&0x1b), "no ANSI escapes");
}

#[tokio::test]
async fn postgres_notices_are_not_printed() {
    let Some(admin) = crate::helpers::pg_admin_url() else {
        return;
    };
    let db = crate::helpers::PgDatabase::create(&admin).await;
    let dir = tempfile::tempdir().unwrap();
    for _ in 0..2 {
        let out = custodian(&["migrate"], &[("DATABASE_URL", &db.url)], dir.path());
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stderr);
        assert!(!text.contains("already exists"), "{text}");
    }
    db.drop_now().await;
}

#[test]
fn completions_and_man_page_need_no_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let out = custodian(&["completions", "bash"], &[], dir.path());
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("custodian"));
    let out = custodian(&["man"], &[], dir.path());
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains(".TH custodian"));
    assert!(!dir.path().join("custodian-data").exists());
}
