//! Secured clusters, on a real broker with SASL_SSL and mTLS listeners and
//! the StandardAuthorizer (`scripts/kafka.sh start --secure`): logins over
//! SCRAM, PLAIN, OAUTHBEARER and client certificates, secrets from files and
//! the environment that never reach the output, and the minimal ACL set —
//! with each of its entries removed, the daemon exits 1 naming what to grant
//! and commits nothing.

mod support;

use std::time::Instant;

use support::secure::{secure, Secure};
use support::*;

/// The ACLs docs/security.md lists as exactly's minimal set, for one
/// pipeline and principal; `skip` leaves one out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Grant {
    ReadInput,
    ReadGroup,
    WriteOutput,
    WriteDeadLetter,
    WriteTransactionalId,
}

const ALL: [Grant; 5] = [
    Grant::ReadInput,
    Grant::ReadGroup,
    Grant::WriteOutput,
    Grant::WriteDeadLetter,
    Grant::WriteTransactionalId,
];

struct Names {
    p: Pipeline,
    dead_letter: String,
    txn: String,
}

fn names(prefix: &str) -> Names {
    // The secured broker first: it becomes the harness's broker.
    secure();
    let p = Pipeline::create(prefix, 2, 2);
    let dead_letter = unique(&format!("{prefix}-dlq"));
    create_topic(&dead_letter, 1);
    Names {
        p,
        dead_letter,
        txn: unique(&format!("{prefix}-txn")),
    }
}

fn grant(s: &Secure, principal: &str, n: &Names, grants: &[Grant]) {
    let user = format!("User:{principal}");
    let mut read = vec!["--add", "--allow-principal", &user, "--operation", "Read"];
    if grants.contains(&Grant::ReadInput) {
        read.extend(["--topic", &n.p.input]);
    }
    if grants.contains(&Grant::ReadGroup) {
        read.extend(["--group", &n.p.group]);
    }
    if read.len() > 5 {
        s.acl(&read);
    }
    let mut write = vec!["--add", "--allow-principal", &user, "--operation", "Write"];
    if grants.contains(&Grant::WriteOutput) {
        write.extend(["--topic", &n.p.output]);
    }
    if grants.contains(&Grant::WriteDeadLetter) {
        write.extend(["--topic", &n.dead_letter]);
    }
    if grants.contains(&Grant::WriteTransactionalId) {
        write.extend(["--transactional-id", &n.txn]);
    }
    if write.len() > 5 {
        s.acl(&write);
    }
}

/// A daemon over SASL_SSL with SCRAM-SHA-512 as `exactly`, and a dead-letter
/// topic, so that every ACL of the minimal set is needed.
fn scram_daemon(s: &Secure, n: &Names) -> DaemonConfig {
    let mut cfg = DaemonConfig::new(&n.p.group, &n.p.input, &n.p.output, &n.txn);
    cfg.bootstrap = Some(s.sasl_ssl().to_owned());
    cfg.extra_toml = format!(
        "{}\n[dead_letter]\ntopic = \"{}\"\n",
        s.sasl_client_toml("SCRAM-SHA-512", "exactly"),
        n.dead_letter
    );
    cfg
}

/// `exactly verify` over SASL_SSL as `verifier`, whose password comes from
/// its file through a reference: (exit code, report).
fn verify_over_sasl_ssl(s: &Secure, n: &Names, outputs: &[&str]) -> (i32, serde_json::Value) {
    let password = format!("sasl.password=${{file:{}}}", s.password_file("verifier"));
    let ca = format!("ssl.ca.location={}", s.ca());
    let mut args = vec![
        "verify",
        "--bootstrap-servers",
        s.sasl_ssl(),
        "--group",
        &n.p.group,
        "--input",
        &n.p.input,
        "--json",
        "--property",
        "security.protocol=SASL_SSL",
        "--property",
        "sasl.mechanism=SCRAM-SHA-512",
        "--property",
        "sasl.username=verifier",
        "--property",
        &password,
        "--property",
        &ca,
    ];
    for o in outputs {
        args.extend(["--output", o]);
    }
    let (code, out, err) = exactly(&args, &[]);
    assert!(
        !err.contains(&s.password("verifier")),
        "verify printed its password"
    );
    (
        code,
        serde_json::from_str(&out).unwrap_or_else(|_| panic!("verify: {out}\n{err}")),
    )
}

#[test]
fn scram_over_sasl_ssl_with_the_minimal_acls_survives_kill_9_and_verify_audits_it_over_sasl_ssl() {
    let s = secure();
    let n = names("scram");
    grant(s, "exactly", &n, &ALL);
    // verify reads the topics and the group's committed offsets.
    s.acl(&[
        "--add",
        "--allow-principal",
        "User:verifier",
        "--operation",
        "Read",
        "--topic",
        &n.p.input,
        "--topic",
        &n.p.output,
        "--topic",
        &n.dead_letter,
    ]);
    s.acl(&[
        "--add",
        "--allow-principal",
        "User:verifier",
        "--operation",
        "Describe",
        "--group",
        &n.p.group,
    ]);
    let input = input_records(20_000, 37);
    let writer = produce_paced(&n.p.input, input.clone(), 5_000);
    let cfg = scram_daemon(s, &n);
    let mut first = Daemon::start(&cfg);
    first.wait_ready();
    first.wait_produced(2_000.0);
    wait_until("an open transaction holding records", || {
        first.assert_alive();
        first.metric("exactly_records_consumed_total")
            - first.metric("exactly_records_produced_total")
            >= 100.0
    });
    first.kill9();
    let mut second = Daemon::start(&cfg);
    writer.join().unwrap();
    wait_caught_up(&n.p.group, &n.p.input, &mut [&mut second]);
    assert_exactly_once_in_order(&input, &n.p.output, "SCRAM over SASL_SSL, kill -9");
    let (code, report) = verify_over_sasl_ssl(s, &n, &[&n.p.output, &n.dead_letter]);
    assert_eq!(code, 0, "verify over SASL_SSL: {report}");
    assert_eq!(report["clean"], true, "{report}");
    let log = first.log_text() + &second.log_text();
    assert!(
        !log.contains(&s.password("exactly")),
        "a log holds the password"
    );
}

#[test]
fn plain_over_sasl_ssl_runs_exactly_once() {
    let s = secure();
    let n = names("plain");
    grant(s, "exactly", &n, &ALL);
    let input = input_records(3_000, 10);
    produce(&n.p.input, &input);
    let mut cfg = DaemonConfig::new(&n.p.group, &n.p.input, &n.p.output, &n.txn);
    cfg.bootstrap = Some(s.sasl_ssl().to_owned());
    cfg.extra_toml = s.sasl_client_toml("PLAIN", "exactly");
    let mut d = Daemon::run_to_end(&cfg);
    d.assert_alive();
    assert_exactly_once_in_order(&input, &n.p.output, "PLAIN over SASL_SSL");
}

#[test]
fn oauthbearer_with_an_unsecured_jwt_runs_exactly_once() {
    let s = secure();
    let n = names("oauth");
    let principal = "exactly-oauth";
    grant(s, principal, &n, &ALL);
    let input = input_records(3_000, 10);
    produce(&n.p.input, &input);
    let mut cfg = DaemonConfig::new(&n.p.group, &n.p.input, &n.p.output, &n.txn);
    cfg.bootstrap = Some(s.sasl_ssl().to_owned());
    cfg.extra_toml = format!(
        "[kafka.client]\n\
         \"security.protocol\" = \"SASL_SSL\"\n\
         \"sasl.mechanism\" = \"OAUTHBEARER\"\n\
         \"enable.sasl.oauthbearer.unsecure.jwt\" = \"true\"\n\
         \"sasl.oauthbearer.config\" = \"principal={principal}\"\n\
         \"ssl.ca.location\" = \"{}\"\n",
        s.ca()
    );
    let mut d = Daemon::run_to_end(&cfg);
    d.assert_alive();
    assert_exactly_once_in_order(&input, &n.p.output, "OAUTHBEARER");
}

#[test]
fn mtls_with_an_encrypted_key_runs_exactly_once_and_a_foreign_certificate_is_refused() {
    let s = secure();
    let n = names("mtls");
    let principal = s.client_principal().trim_start_matches("User:");
    grant(s, principal, &n, &ALL);
    let input = input_records(3_000, 10);
    produce(&n.p.input, &input);
    let mut cfg = DaemonConfig::new(&n.p.group, &n.p.input, &n.p.output, &n.txn);
    cfg.bootstrap = Some(s.ssl().to_owned());
    cfg.extra_toml = s.mtls_client_toml("EXACTLY_TEST_KEY_PASSPHRASE");
    let passphrase = s.client_key_password();
    cfg.extra_env = vec![("EXACTLY_TEST_KEY_PASSPHRASE".into(), passphrase.clone())];
    let mut d = Daemon::run_to_end(&cfg);
    d.assert_alive();
    assert_exactly_once_in_order(&input, &n.p.output, "mTLS");
    assert!(
        !d.log_text().contains(&passphrase),
        "the log holds the passphrase"
    );

    // A certificate from another CA: the handshake fails, and the daemon
    // says so at once instead of waiting out startup_timeout_ms.
    let (cert, key) = s.stranger_cert();
    let mut stranger = DaemonConfig::new(&n.p.group, &n.p.input, &n.p.output, &n.txn);
    stranger.bootstrap = Some(s.ssl().to_owned());
    stranger.extra_toml = format!(
        "[kafka.client]\n\
         \"security.protocol\" = \"SSL\"\n\
         \"ssl.ca.location\" = \"{}\"\n\
         \"ssl.certificate.location\" = \"{cert}\"\n\
         \"ssl.key.location\" = \"{key}\"\n",
        s.ca()
    );
    stranger.extra_toml += "\n";
    stranger.extra_env = vec![("EXACTLY__KAFKA__STARTUP_TIMEOUT_MS".into(), "600000".into())];
    let mut refused = Daemon::start(&stranger);
    let status = refused.wait_exit();
    let log = strip_ansi(&refused.log_text());
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(log.contains("TLS handshake") && log.contains(cert), "{log}");
}

#[test]
fn a_wrong_password_exits_1_at_once_naming_mechanism_principal_and_broker_and_never_the_password() {
    let s = secure();
    let n = names("wrongpw");
    grant(s, "exactly", &n, &ALL);
    let wrong = "not-the-password-7d1e";
    let mut cfg = DaemonConfig::new(&n.p.group, &n.p.input, &n.p.output, &n.txn);
    cfg.bootstrap = Some(s.sasl_ssl().to_owned());
    cfg.extra_toml = format!(
        "[kafka.client]\n\
         \"security.protocol\" = \"SASL_SSL\"\n\
         \"sasl.mechanism\" = \"SCRAM-SHA-512\"\n\
         \"sasl.username\" = \"exactly\"\n\
         \"ssl.ca.location\" = \"{}\"\n",
        s.ca()
    );
    // The password from the environment, as a container would pass it. A
    // start-up timeout of ten minutes: only the refused login can end the
    // wait within the harness's deadline.
    cfg.extra_env = vec![
        ("EXACTLY__KAFKA__CLIENT__SASL_PASSWORD".into(), wrong.into()),
        ("EXACTLY__KAFKA__STARTUP_TIMEOUT_MS".into(), "600000".into()),
    ];
    let started = Instant::now();
    let mut d = Daemon::start(&cfg);
    let status = d.wait_exit();
    eprintln!("wrong password: exit after {:?}", started.elapsed());
    let log = strip_ansi(&d.log_text());
    assert_eq!(status.code(), Some(1), "{log}");
    for needle in ["SCRAM-SHA-512", "User:exactly", s.sasl_ssl()] {
        assert!(log.contains(needle), "`{needle}` missing from:\n{log}");
    }
    assert!(
        !log.contains(wrong),
        "the password reached the output:\n{log}"
    );

    // `check` shows the effective settings with the password masked.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("exactly.toml");
    std::fs::write(
        &path,
        format!(
            "[kafka]\nbootstrap_servers = \"{}\"\ngroup_id = \"g\"\n\
             [input]\ntopics = [\"i\"]\n[output]\ntopic = \"o\"\n{}",
            s.sasl_ssl(),
            cfg.extra_toml
        ),
    )
    .unwrap();
    let (code, out, err) = exactly(
        &["check", "--config", path.to_str().unwrap()],
        &[("EXACTLY__KAFKA__CLIENT__SASL_PASSWORD", wrong)],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("sasl.password") && out.contains("********"),
        "{out}"
    );
    assert!(!out.contains(wrong) && !err.contains(wrong), "{out}{err}");
}

/// Runs the daemon with every ACL of the minimal set but `missing`; it must
/// exit 1 naming what to grant, and nothing may be committed.
fn without(missing: Grant, expect: impl Fn(&Names) -> Vec<String>) {
    let s = secure();
    let n = names(&format!("acl-{missing:?}").to_ascii_lowercase());
    let grants: Vec<Grant> = ALL.iter().copied().filter(|g| *g != missing).collect();
    grant(s, "exactly", &n, &grants);
    let input = input_records(500, 5);
    produce(&n.p.input, &input);
    let cfg = scram_daemon(s, &n);
    let mut d = Daemon::start(&cfg);
    let status = d.wait_exit();
    let log = strip_ansi(&d.log_text());
    assert_eq!(status.code(), Some(1), "{missing:?}: {log}");
    for needle in expect(&n) {
        assert!(
            log.contains(&needle),
            "{missing:?}: `{needle}` missing from:\n{log}"
        );
    }
    let (committed, _) = committed_and_end(&n.p.group, &n.p.input);
    assert!(
        committed <= 0,
        "{missing:?}: offsets committed: {committed}"
    );
    assert_eq!(
        read_all(&n.p.output, "read_committed").len(),
        0,
        "{missing:?}: outputs committed"
    );
}

#[test]
fn without_read_on_the_input_topic_the_daemon_exits_1_naming_it() {
    without(Grant::ReadInput, |n| {
        vec![
            format!("grant READ on Topic:{}", n.p.input),
            "User:exactly".into(),
        ]
    });
}

#[test]
fn without_read_on_the_group_the_daemon_exits_1_naming_it() {
    without(Grant::ReadGroup, |n| {
        vec![
            format!("grant READ on Group:{}", n.p.group),
            "User:exactly".into(),
        ]
    });
}

#[test]
fn without_write_on_the_output_topic_the_daemon_exits_1_naming_it() {
    without(Grant::WriteOutput, |n| {
        vec![
            format!("grant WRITE on Topic:{}", n.p.output),
            "User:exactly".into(),
        ]
    });
}

#[test]
fn without_write_on_the_dead_letter_topic_the_daemon_exits_1_naming_it() {
    without(Grant::WriteDeadLetter, |n| {
        vec![
            format!("grant WRITE on Topic:{}", n.dead_letter),
            "User:exactly".into(),
        ]
    });
}

#[test]
fn without_write_on_the_transactional_id_the_daemon_exits_1_naming_it() {
    without(Grant::WriteTransactionalId, |n| {
        vec![
            format!("grant WRITE on TransactionalId:{}", n.txn),
            "Transactional Id authorization failed".into(),
        ]
    });
}

/// A token endpoint for the OIDC client-credentials flow: it answers every
/// POST with an unsigned JWT for `subject` (the broker's unsecured validator
/// accepts it), and keeps each request's `Authorization` header.
fn token_endpoint(
    subject: &'static str,
) -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/token", listener.local_addr().unwrap());
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let (mut auth, mut length) = (String::new(), 0usize);
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap_or(0) > 0 && line != "\r\n" {
                let lower = line.to_ascii_lowercase();
                if lower.starts_with("authorization:") {
                    auth = line["authorization:".len()..].trim().to_owned();
                }
                if let Some(v) = lower.strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
                line.clear();
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            log.lock().unwrap().push(auth);
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs();
            let part = |json: String| base64url(json.as_bytes());
            let jwt = format!(
                "{}.{}.",
                part(r#"{"alg":"none"}"#.to_owned()),
                part(format!(
                    r#"{{"sub":"{subject}","iat":{now},"exp":{},"scope":"kafka"}}"#,
                    now + 3600
                ))
            );
            let reply =
                format!(r#"{{"access_token":"{jwt}","token_type":"bearer","expires_in":3600}}"#);
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reply}",
                reply.len()
            );
        }
    });
    (url, seen)
}

fn base64url(bytes: &[u8]) -> String {
    const ABC: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (*b as u32) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(ABC[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

#[test]
fn the_oidc_client_credentials_flow_logs_in_with_a_secret_from_a_file() {
    let s = secure();
    let n = names("oidc");
    let principal = "exactly-oidc";
    grant(s, principal, &n, &ALL);
    let (url, requests) = token_endpoint(principal);
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("client-secret");
    let client_secret = "oidc-client-secret-93f1";
    std::fs::write(&secret_file, format!("{client_secret}\n")).unwrap();
    let input = input_records(3_000, 10);
    produce(&n.p.input, &input);
    let mut cfg = DaemonConfig::new(&n.p.group, &n.p.input, &n.p.output, &n.txn);
    cfg.bootstrap = Some(s.sasl_ssl().to_owned());
    cfg.extra_toml = format!(
        "[kafka.client]\n\
         \"security.protocol\" = \"SASL_SSL\"\n\
         \"sasl.mechanism\" = \"OAUTHBEARER\"\n\
         \"sasl.oauthbearer.method\" = \"oidc\"\n\
         \"sasl.oauthbearer.client.id\" = \"exactly-app\"\n\
         \"sasl.oauthbearer.client.secret\" = \"${{file:{}}}\"\n\
         \"sasl.oauthbearer.token.endpoint.url\" = \"{url}\"\n\
         \"sasl.oauthbearer.scope\" = \"kafka\"\n\
         \"ssl.ca.location\" = \"{}\"\n",
        secret_file.display(),
        s.ca()
    );
    let mut d = Daemon::run_to_end(&cfg);
    d.assert_alive();
    assert_exactly_once_in_order(&input, &n.p.output, "OIDC");
    // The client credentials went to the endpoint (HTTP basic auth), read
    // from the file without its line break; the log never shows them.
    let expected = format!(
        "Basic {}",
        base64_std(format!("exactly-app:{client_secret}").as_bytes())
    );
    let seen = requests.lock().unwrap().clone();
    assert!(seen.contains(&expected), "token requests carried {seen:?}");
    assert!(
        !d.log_text().contains(client_secret),
        "the log holds the client secret"
    );
}

fn base64_std(bytes: &[u8]) -> String {
    let url = base64url(bytes).replace('-', "+").replace('_', "/");
    let pad = (4 - url.len() % 4) % 4;
    url + &"=".repeat(pad)
}

#[test]
fn a_broker_certificate_the_client_does_not_trust_ends_start_up_at_once() {
    // No ssl.ca.location: exactly probes the system's CA store, which does
    // not hold the per-run test CA. librdkafka only logs this failure; the
    // start-up check must still see it instead of waiting out the timeout.
    let s = secure();
    let n = names("untrusted");
    let mut cfg = DaemonConfig::new(&n.p.group, &n.p.input, &n.p.output, &n.txn);
    cfg.bootstrap = Some(s.sasl_ssl().to_owned());
    cfg.extra_toml = s
        .sasl_client_toml("SCRAM-SHA-512", "exactly")
        .lines()
        .filter(|l| !l.contains("ssl.ca.location"))
        .collect::<Vec<_>>()
        .join("\n");
    cfg.extra_env = vec![("EXACTLY__KAFKA__STARTUP_TIMEOUT_MS".into(), "600000".into())];
    let mut d = Daemon::start(&cfg);
    let status = d.wait_exit();
    let log = strip_ansi(&d.log_text());
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(
        log.contains("failed the TLS handshake") && log.contains("certificate verify failed"),
        "{log}"
    );
}
