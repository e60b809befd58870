//! Bad configuration: each error names the key and exits 2 before touching
//! Kafka; `exactly check` prints the effective settings with secrets masked;
//! an unreachable broker or a missing topic is a clear error.

mod support;

use support::*;

const GOOD: &str = r#"
[kafka]
bootstrap_servers = "127.0.0.1:9"
group_id = "g"
transactional_id = "t-0"

[kafka.producer]
"sasl.password" = "hunter2"

[input]
topics = ["in"]

[output]
topic = "out"
"#;

fn write(text: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, text).unwrap();
    (dir, path.to_str().unwrap().to_owned())
}

/// Durability is not a tuning knob: in at_least_once mode too, `acks=all`
/// and idempotence cannot be weakened, from the file or the environment.
#[test]
fn at_least_once_refuses_weaker_acks_or_idempotence_by_name() {
    let alo = format!("{GOOD}\n[processing]\nguarantee = \"at_least_once\"\n");
    type Env<'a> = &'a [(&'a str, &'a str)];
    let cases: &[(&str, Env, &str)] = &[
        (
            "[kafka.producer]\n\"acks\" = \"1\"",
            &[],
            "kafka.producer.\"acks\"",
        ),
        (
            "[kafka.producer]\n\"enable.idempotence\" = \"false\"",
            &[],
            "kafka.producer.\"enable.idempotence\"",
        ),
        (
            "[kafka.producer]",
            &[("EXACTLY__KAFKA__CLIENT__ACKS", "0")],
            "kafka.client.\"acks\"",
        ),
        (
            "[kafka.producer]",
            &[("EXACTLY__KAFKA__PRODUCER__REQUEST_REQUIRED_ACKS", "1")],
            "kafka.producer.\"request.required.acks\"",
        ),
    ];
    for (replacement, env, key) in cases {
        let text = alo.replacen("[kafka.producer]", replacement, 1);
        let (_d, path) = write(&text);
        for cmd in ["check", "run"] {
            let (code, _, err) = exactly(&[cmd, "--config", &path], env);
            assert_eq!(code, 2, "{cmd} with {replacement} {env:?}: {err}");
            assert!(err.contains(key), "{cmd}: error should name {key}: {err}");
            assert!(
                err.contains("acks=all") || err.contains("idempotent"),
                "{err}"
            );
        }
    }
    // The same file without the override is accepted.
    let (_d, path) = write(&alo);
    let (code, _, err) = exactly(&["check", "--config", &path], &[]);
    assert_eq!(code, 0, "{err}");
}

#[test]
fn each_invalid_configuration_names_the_key_and_exits_2() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "group_id = \"g\"",
            "group_id = \"g\"\ngroup = \"x\"",
            "kafka.group",
        ),
        ("topic = \"out\"", "topic = [\"out\"]", "output.topic"),
        (
            "topic = \"out\"",
            "topic = \"out\"\n[processing]\nguarantee = \"maybe\"",
            "processing.guarantee",
        ),
        (
            "topic = \"out\"",
            "topic = \"out\"\n[processing]\ncommit_interval_ms = -1",
            "processing.commit_interval_ms",
        ),
        (
            "topic = \"out\"",
            "topic = \"out\"\n[processing]\nworkers = 0",
            "processing.workers",
        ),
        (
            "topic = \"out\"",
            "topic = \"out\"\n[http]\nlisten = \"nowhere\"",
            "http.listen",
        ),
        (
            "topic = \"out\"",
            "topic = \"out\"\n[log]\nformat = \"xml\"",
            "log.format",
        ),
        (
            "[kafka.producer]",
            "[kafka.consumer]\n\"isolation.level\" = \"read_uncommitted\"\n[kafka.producer]",
            "isolation.level",
        ),
        (
            "[kafka.producer]",
            "[kafka.consumer]\n\"enable.auto.commit\" = \"true\"\n[kafka.producer]",
            "enable.auto.commit",
        ),
        (
            "[kafka.producer]",
            "[kafka.producer]\n\"transactional.id\" = \"x\"",
            "transactional.id",
        ),
        (
            "[kafka.producer]",
            "[kafka.producer]\n\"enable.idempotence\" = \"false\"",
            "enable.idempotence",
        ),
        (
            "topics = [\"in\"]",
            "topics = [\"in\"]\nextra = 1",
            "input.extra",
        ),
    ];
    for (needle, replacement, key) in cases {
        let text = GOOD.replacen(needle, replacement, 1);
        assert_ne!(text, GOOD);
        let (_d, path) = write(&text);
        for cmd in ["check", "run"] {
            let (code, _, err) = exactly(&[cmd, "--config", &path], &[]);
            assert_eq!(code, 2, "{cmd} with {replacement}: {err}");
            assert!(err.contains(key), "{cmd}: error should name `{key}`: {err}");
        }
    }
}

#[test]
fn an_invalid_environment_override_names_the_key_and_exits_2() {
    let (_d, path) = write(GOOD);
    let (code, _, err) = exactly(
        &["run", "--config", &path],
        &[("EXACTLY__PROCESSING__MAX_BATCH_RECORDS", "lots")],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("processing.max_batch_records"), "{err}");
}

#[test]
fn a_missing_file_is_named_and_exits_2() {
    let (code, _, err) = exactly(&["check", "--config", "/nonexistent/exactly.toml"], &[]);
    assert_eq!(code, 2);
    assert!(err.contains("/nonexistent/exactly.toml"), "{err}");
}

#[test]
fn check_prints_effective_settings_with_secrets_masked() {
    let (_d, path) = write(GOOD);
    let (code, out, err) = exactly(
        &["check", "--config", &path],
        &[("EXACTLY__PROCESSING__WORKERS", "3")],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("workers = 3"), "{out}");
    assert!(
        out.contains("commit_interval_ms = 100"),
        "defaults are shown: {out}"
    );
    assert!(out.contains("sasl.password"), "{out}");
    assert!(!out.contains("hunter2"), "secret printed: {out}");
}

#[test]
fn an_unreachable_broker_is_named_and_exits_1() {
    let (_d, path) = write(GOOD);
    let (code, _, err) = exactly(
        &["run", "--config", &path],
        &[
            ("EXACTLY__KAFKA__STARTUP_TIMEOUT_MS", "2000"),
            ("EXACTLY__HTTP__LISTEN", "127.0.0.1:0"),
        ],
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("cannot reach Kafka") && err.contains("127.0.0.1:9"),
        "{err}"
    );
    assert!(!err.contains("hunter2"));
}

#[test]
fn a_missing_topic_is_named_and_exits_1() {
    let input = unique("exists");
    create_topic(&input, 1);
    let (_d, path) = write(GOOD);
    let (code, _, err) = exactly(
        &["run", "--config", &path],
        &[
            ("EXACTLY__KAFKA__BOOTSTRAP_SERVERS", &broker().bootstrap),
            ("EXACTLY__INPUT__TOPICS", &input),
            ("EXACTLY__OUTPUT__TOPIC", "no-such-output-topic"),
            ("EXACTLY__HTTP__LISTEN", "127.0.0.1:0"),
        ],
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("no-such-output-topic") && err.contains("does not exist"),
        "{err}"
    );
}

#[test]
fn check_reports_a_jq_syntax_error_with_the_step_number_and_position() {
    let text = format!(
        "{GOOD}\n[[transform]]\ntype = \"map\"\nexpr = '{{id: .id}}'\n\n[[transform]]\ntype = \"filter\"\nexpr = '.amount > '\n"
    );
    let (_d, path) = write(&text);
    let (code, _, err) = exactly(&["check", "--config", &path], &[]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("transform[2] (filter)") && err.contains("position 10"),
        "{err}"
    );
    let (_d, path) = write(&format!("{GOOD}\n[[transform]]\ntype = \"nope\"\n"));
    let (code, _, err) = exactly(&["check", "--config", &path], &[]);
    assert_eq!(code, 2);
    assert!(
        err.contains("unknown type `nope`") && err.contains("filter"),
        "{err}"
    );
}

#[test]
fn a_secret_that_librdkafka_echoes_in_its_error_is_redacted() {
    // librdkafka's own "Invalid value" errors repeat the value; one read
    // from the environment through a reference must not reach the output.
    let secret = "s3cret-not-a-number-4711";
    // The check is offline now, at load: exit 2, before any client exists.
    let (_dir, path) = write(&GOOD.replace(
        "[kafka.producer]",
        "[kafka.client]\n\"compression.type\" = \"${env:EXACTLY_TEST_ECHOED}\"\n[kafka.producer]",
    ));
    let (code, out, err) = exactly(
        &["run", "--config", &path],
        &[("EXACTLY_TEST_ECHOED", secret)],
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("compression.type") && err.contains("Invalid value \"********\""),
        "{err}"
    );
    assert!(!err.contains(secret) && !out.contains(secret), "{err}");
}

#[test]
fn an_unreadable_secret_file_names_the_property_and_the_file_and_exits_2() {
    let (_dir, path) = write(&GOOD.replace(
        "\"sasl.password\" = \"hunter2\"",
        "\"sasl.password\" = \"${file:/nonexistent/exactly/password}\"",
    ));
    let (code, _, err) = exactly(&["check", "--config", &path], &[]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("kafka.producer.\"sasl.password\"")
            && err.contains("/nonexistent/exactly/password"),
        "{err}"
    );
}

#[test]
fn version_names_librdkafka_and_its_security_and_codec_features() {
    let (code, out, _) = exactly(&["--version"], &[]);
    assert_eq!(code, 0);
    assert!(out.contains("librdkafka 2."), "{out}");
    for feature in [
        "ssl",
        "sasl_scram",
        "sasl_oauthbearer",
        "oidc",
        "zstd",
        "lz4",
        "snappy",
        "gzip",
    ] {
        assert!(out.contains(feature), "`{feature}` missing: {out}");
    }
}
