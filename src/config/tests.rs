use super::*;

/// The minimal file from the documentation, verbatim.
const MINIMAL: &str = r#"
[kafka]
bootstrap_servers = "127.0.0.1:9092"
group_id = "orders-enricher"
transactional_id = "orders-enricher-0"   # stable per replica; default derived from the hostname

[kafka.consumer]   # optional: librdkafka consumer properties, passed through
"session.timeout.ms" = "6000"

[kafka.producer]   # optional: librdkafka producer properties, passed through

[input]
topics = ["orders"]

[output]
topic = "orders-enriched"

[processing]
guarantee = "exactly_once"     # or "at_least_once"
commit_interval_ms = 100       # a transaction closes after this long ...
max_batch_records = 10000      # ... or after this many records, whichever comes first

[http]
listen = "0.0.0.0:9464"
"#;

fn no_env() -> Vec<(String, String)> {
    Vec::new()
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn err_of(text: &str, env: Vec<(String, String)>) -> (String, String) {
    match Settings::parse(text, env) {
        Err(ConfigError::Invalid { key, message, .. }) => (key, message),
        Err(other) => panic!("expected an invalid-key error, got {other}"),
        Ok(_) => panic!("expected an error"),
    }
}

#[test]
fn the_documented_minimal_file_parses_as_written() {
    let s = Settings::parse(MINIMAL, no_env()).unwrap();
    assert_eq!(s.kafka.bootstrap_servers, "127.0.0.1:9092");
    assert_eq!(
        s.kafka.transactional_id.as_deref(),
        Some("orders-enricher-0")
    );
    assert_eq!(s.kafka.consumer["session.timeout.ms"], "6000");
    assert_eq!(s.input.topics, vec!["orders"]);
    assert_eq!(s.processing.guarantee, Guarantee::ExactlyOnce);
    assert_eq!(s.processing.commit_interval_ms, 100);
    assert_eq!(s.processing.max_batch_records, 10_000);
    assert_eq!(s.processing.workers, 1);
    assert!(
        s.kafka.static_membership,
        "static membership is on by default"
    );
    assert!(s.output.lineage, "lineage headers are on by default");
}

#[test]
fn the_shipped_config_file_is_valid() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/config/exactly.toml");
    Settings::load_with_env(Path::new(path), no_env()).unwrap();
}

#[test]
fn environment_overrides_every_kind_of_key() {
    let s = Settings::parse(
        MINIMAL,
        env(&[
            ("EXACTLY__KAFKA__BOOTSTRAP_SERVERS", "kafka:9092"),
            ("EXACTLY__KAFKA__TRANSACTIONAL_ID", "42"),
            ("EXACTLY__PROCESSING__WORKERS", "3"),
            ("EXACTLY__PROCESSING__GUARANTEE", "at_least_once"),
            ("EXACTLY__INPUT__TOPICS", "a,b"),
            ("EXACTLY__KAFKA__CONSUMER__FETCH_MAX_BYTES", "1048576"),
            ("EXACTLY__LOG__FORMAT", "json"),
            ("EXACTLY__KAFKA__STATIC_MEMBERSHIP", "false"),
            ("EXACTLY__OUTPUT__LINEAGE", "false"),
            ("UNRELATED", "x"),
        ]),
    )
    .unwrap();
    assert_eq!(s.kafka.bootstrap_servers, "kafka:9092");
    assert_eq!(s.kafka.transactional_id.as_deref(), Some("42"));
    assert_eq!(s.processing.workers, 3);
    assert_eq!(s.processing.guarantee, Guarantee::AtLeastOnce);
    assert_eq!(s.input.topics, vec!["a", "b"]);
    assert_eq!(s.kafka.consumer["fetch.max.bytes"], "1048576");
    assert_eq!(s.kafka.consumer["session.timeout.ms"], "6000");
    assert_eq!(s.log.format, LogFormat::Json);
    assert!(!s.kafka.static_membership);
    assert!(!s.output.lineage);
}

#[test]
fn log_level_keeps_its_underscore_in_the_passthrough_tables() {
    // librdkafka spells `log_level` with an underscore; turned into
    // `log.level` it would be an unknown property.
    let s = Settings::parse(
        &MINIMAL.replace(
            "[kafka.producer]   # optional: librdkafka producer properties, passed through",
            "[kafka.producer]\nlog_level = \"7\"\nlinger_ms = \"1\"",
        ),
        env(&[("EXACTLY__KAFKA__CONSUMER__LOG_LEVEL", "6")]),
    )
    .unwrap();
    assert_eq!(s.kafka.producer["log_level"], "7");
    assert_eq!(s.kafka.producer["linger.ms"], "1");
    assert_eq!(s.kafka.consumer["log_level"], "6");
    assert!(!s.kafka.producer.contains_key("log.level"));
}

#[test]
fn an_unknown_key_is_named() {
    let (key, msg) = err_of(
        &MINIMAL.replace("commit_interval_ms", "commit_intervall_ms"),
        no_env(),
    );
    assert_eq!(key, "processing.commit_intervall_ms");
    assert_eq!(
        msg, "unknown key `commit_intervall_ms`; did you mean `commit_interval_ms`?",
        "the nearest valid key"
    );
}

#[test]
fn an_unknown_section_is_named() {
    let (key, _) = err_of(&format!("{MINIMAL}\n[outptu]\ntopic = \"x\"\n"), no_env());
    assert_eq!(key, "outptu");
}

#[test]
fn a_value_of_the_wrong_type_is_named() {
    let (key, msg) = err_of(&MINIMAL.replace("= 10000", "= \"many\""), no_env());
    assert_eq!(key, "processing.max_batch_records");
    assert!(msg.contains("many"), "{msg}");
}

#[test]
fn a_wrong_environment_value_is_named() {
    let (key, msg) = err_of(MINIMAL, env(&[("EXACTLY__PROCESSING__WORKERS", "lots")]));
    assert_eq!(key, "processing.workers");
    assert!(msg.contains("environment"), "{msg}");
}

#[test]
fn an_unknown_guarantee_lists_the_allowed_ones() {
    let (key, msg) = err_of(
        &MINIMAL.replace("\"exactly_once\"", "\"exactly\""),
        no_env(),
    );
    assert_eq!(key, "processing.guarantee");
    assert!(
        msg.contains("exactly_once") && msg.contains("at_least_once"),
        "{msg}"
    );
}

#[test]
fn a_missing_required_key_is_named() {
    let (key, msg) = err_of(
        &MINIMAL.replace("group_id = \"orders-enricher\"", ""),
        no_env(),
    );
    assert!(key.starts_with("kafka"), "{key}");
    assert!(msg.contains("group_id"), "{msg}");
}

#[test]
fn out_of_range_values_are_refused() {
    for (needle, replacement, key) in [
        (
            "commit_interval_ms = 100",
            "commit_interval_ms = 0",
            "processing.commit_interval_ms",
        ),
        (
            "max_batch_records = 10000",
            "max_batch_records = 0",
            "processing.max_batch_records",
        ),
        (
            "[processing]",
            "[processing]\nworkers = 0",
            "processing.workers",
        ),
        ("0.0.0.0:9464", "localhost", "http.listen"),
        ("topics = [\"orders\"]", "topics = []", "input.topics"),
        (
            "topic = \"orders-enriched\"",
            "topic = \"bad topic\"",
            "output.topic",
        ),
        (
            "topic = \"orders-enriched\"",
            "topic = \"orders\"",
            "output.topic",
        ),
        (
            "bootstrap_servers = \"127.0.0.1:9092\"",
            "bootstrap_servers = \"\"",
            "kafka.bootstrap_servers",
        ),
    ] {
        let text = MINIMAL.replace(needle, replacement);
        assert_ne!(text, MINIMAL, "{needle} not found");
        let (got, _) = err_of(&text, no_env());
        assert_eq!(got, key, "for {replacement}");
    }
}

#[test]
fn properties_that_would_break_the_guarantee_are_refused() {
    for (section, prop) in [
        ("[kafka.consumer]", "isolation.level"),
        ("[kafka.consumer]", "enable.auto.commit"),
        ("[kafka.consumer]", "group.instance.id"),
        ("[kafka.producer]", "transactional.id"),
        ("[kafka.producer]", "enable.idempotence"),
    ] {
        let text = MINIMAL.replace(section, &format!("{section}\n\"{prop}\" = \"x\""));
        let (key, msg) = err_of(&text, no_env());
        assert!(key.contains(prop), "{key}");
        assert!(msg.contains("managed by exactly"), "{msg}");
    }
}

#[test]
fn at_least_once_cannot_weaken_acks_or_idempotence() {
    for (prop, value) in [
        ("enable.idempotence", "false"),
        ("acks", "1"),
        ("acks", "0"),
        ("request.required.acks", "1"),
    ] {
        let line = format!("\"{prop}\" = \"{value}\"");
        let at_least_once = MINIMAL.replace("\"exactly_once\"", "\"at_least_once\"");
        for (table, text) in [
            (
                "kafka.producer",
                at_least_once.replace("[kafka.producer]", &format!("[kafka.producer]\n{line}")),
            ),
            (
                "kafka.client",
                format!("{at_least_once}\n[kafka.client]\n{line}\n"),
            ),
        ] {
            let (key, msg) = err_of(&text, no_env());
            assert_eq!(key, format!("{table}.\"{prop}\""), "{text}");
            assert!(msg.contains("managed by exactly"), "{msg}");
        }
    }
}

#[test]
fn transactional_ids_are_stable_and_distinct_per_worker() {
    let mut s = Settings::parse(MINIMAL, no_env()).unwrap();
    assert_eq!(s.worker_transactional_id(0), "orders-enricher-0");
    s.processing.workers = 2;
    assert_eq!(s.worker_transactional_id(0), "orders-enricher-0-w0");
    assert_eq!(s.worker_transactional_id(1), "orders-enricher-0-w1");
    s.kafka.transactional_id = None;
    let derived = s.base_transactional_id();
    assert!(derived.starts_with("orders-enricher-"), "{derived}");
    assert_eq!(
        derived,
        s.base_transactional_id(),
        "derived id must be stable"
    );
}

#[test]
fn secrets_are_masked_in_the_effective_settings() {
    let text = MINIMAL.replace(
        "[kafka.producer]",
        "[kafka.producer]\n\"sasl.password\" = \"hunter2\"\n\"sasl.username\" = \"alice\"",
    );
    let shown = Settings::parse(&text, no_env()).unwrap().to_masked_toml();
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains("********"));
    assert!(shown.contains("alice"));
}

#[test]
fn a_commit_interval_the_transaction_timeout_would_cut_short_is_refused() {
    // exactly's default timeout is 10 s.
    let text = MINIMAL.replace("commit_interval_ms = 100", "commit_interval_ms = 10000");
    let (key, msg) = err_of(&text, no_env());
    assert_eq!(key, "processing.commit_interval_ms");
    assert!(
        msg.contains("transaction.timeout.ms") && msg.contains("10000 ms"),
        "{msg}"
    );
    // A user timeout that fits makes the same interval valid...
    let fits = text.replace(
        "[kafka.producer]",
        "[kafka.producer]\n\"transaction.timeout.ms\" = \"60000\"",
    );
    assert!(Settings::parse(&fits, no_env()).is_ok());
    // ...one that does not is refused the same way, from the environment too.
    let (key, _) = err_of(
        MINIMAL,
        env(&[("EXACTLY__KAFKA__PRODUCER__TRANSACTION_TIMEOUT_MS", "100")]),
    );
    assert_eq!(key, "processing.commit_interval_ms");
    // at_least_once has no transaction to time out.
    let alo = text.replace("\"exactly_once\"", "\"at_least_once\"");
    assert!(Settings::parse(&alo, no_env()).is_ok());
}

/// MINIMAL with a `[kafka.client]` table holding `lines`.
fn with_client(lines: &str) -> String {
    format!("{MINIMAL}\n[kafka.client]\n{lines}\n")
}

#[test]
fn passthrough_values_from_the_environment_stay_the_strings_given() {
    let s = Settings::parse(
        MINIMAL,
        env(&[
            ("EXACTLY__KAFKA__CLIENT__SASL_PASSWORD", "0042"),
            ("EXACTLY__KAFKA__CLIENT__SASL_USERNAME", "1e5"),
            ("EXACTLY__KAFKA__PRODUCER__ENABLE_GAPLESS_GUARANTEE", "TRUE"),
            (
                "EXACTLY__KAFKA__CONSUMER__CLIENT_RACK",
                "12345678901234567890123",
            ),
        ]),
    )
    .unwrap();
    assert_eq!(s.kafka.client["sasl.password"], "0042");
    assert_eq!(s.kafka.client["sasl.username"], "1e5");
    assert_eq!(s.kafka.producer["enable.gapless.guarantee"], "TRUE");
    assert_eq!(s.kafka.consumer["client.rack"], "12345678901234567890123");
    // The environment wins over the file, as for every other key.
    assert_eq!(s.kafka.consumer["session.timeout.ms"], "6000");
    let s = Settings::parse(
        MINIMAL,
        env(&[("EXACTLY__KAFKA__CONSUMER__SESSION_TIMEOUT_MS", "7000")]),
    )
    .unwrap();
    assert_eq!(s.kafka.consumer["session.timeout.ms"], "7000");
}

#[test]
fn the_client_table_reaches_consumers_and_producers_and_theirs_win() {
    let text = with_client("\"security.protocol\" = \"SASL_SSL\"\n\"sasl.mechanism\" = \"SCRAM-SHA-512\"\n\"sasl.username\" = \"u\"\n\"client.rack\" = \"a\"")
        .replace(
            "[kafka.producer]",
            "[kafka.producer]\n\"client.rack\" = \"b\"",
        );
    let s = Settings::parse(&text, no_env()).unwrap();
    let consumer = s.kafka.resolved.for_consumer();
    let producer = s.kafka.resolved.for_producer();
    assert_eq!(consumer["security.protocol"], "SASL_SSL");
    assert_eq!(producer["sasl.mechanism"], "SCRAM-SHA-512");
    assert_eq!(consumer["client.rack"], "a");
    assert_eq!(producer["client.rack"], "b");
}

#[test]
fn the_client_table_cannot_set_what_exactly_owns() {
    for key in [
        "isolation.level",
        "transactional.id",
        "enable.idempotence",
        "group.id",
    ] {
        let (got, msg) = err_of(&with_client(&format!("\"{key}\" = \"x\"")), no_env());
        assert_eq!(got, format!("kafka.client.\"{key}\""));
        assert!(msg.contains("managed by exactly"), "{msg}");
    }
}

#[test]
fn sasl_without_a_usable_mechanism_is_refused_before_librdkafka_sees_it() {
    let (key, msg) = err_of(
        &with_client("\"security.protocol\" = \"SASL_SSL\""),
        no_env(),
    );
    assert_eq!(key, "kafka.client.\"security.protocol\"");
    assert!(
        msg.contains("sasl.mechanism") && msg.contains("GSSAPI"),
        "{msg}"
    );
    let (key, msg) = err_of(
        &with_client("\"security.protocol\" = \"SASL_SSL\"\n\"sasl.mechanism\" = \"GSSAPI\""),
        no_env(),
    );
    assert_eq!(key, "kafka.client.\"sasl.mechanism\"");
    assert!(msg.contains("Kerberos"), "{msg}");
    let (_, msg) = err_of(
        &with_client(
            "\"security.protocol\" = \"sasl_plaintext\"\n\"sasl.mechanism\" = \"SCRAM-SHA-512\"",
        ),
        no_env(),
    );
    assert!(msg.contains("sasl.username"), "{msg}");
    // OAUTHBEARER needs no user name; the producer's own table counts too.
    let text = MINIMAL.replace(
        "[kafka.producer]",
        "[kafka.producer]\n\"security.protocol\" = \"SASL_SSL\"\n\"sasl.mechanism\" = \"OAUTHBEARER\"",
    );
    Settings::parse(&text, no_env()).unwrap();
}

#[test]
fn secret_references_are_read_shown_as_written_and_broken_ones_named() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("password");
    std::fs::write(&file, "from-the-file\n").unwrap();
    let text = with_client(&format!(
        "\"security.protocol\" = \"SASL_SSL\"\n\"sasl.mechanism\" = \"PLAIN\"\n\
         \"sasl.username\" = \"u\"\n\"sasl.password\" = \"${{file:{}}}\"",
        file.display()
    ));
    let s = Settings::parse(&text, no_env()).unwrap();
    assert_eq!(s.kafka.resolved.client["sasl.password"], "from-the-file");
    let shown = s.to_masked_toml();
    assert!(shown.contains("${file:"), "{shown}");
    assert!(!shown.contains("from-the-file"), "{shown}");
    assert_eq!(crate::secrets::redact("x from-the-file y"), "x ******** y");

    let (key, msg) = err_of(
        &with_client("\"sasl.password\" = \"${file:/nonexistent/exactly-pw}\""),
        no_env(),
    );
    assert_eq!(key, "kafka.client.\"sasl.password\"");
    assert!(msg.contains("/nonexistent/exactly-pw"), "{msg}");
}

#[test]
fn environment_strings_stay_exactly_as_given() {
    for value in [
        "0042",
        "1e5",
        "TRUE",
        "12345678901234567890123",
        "-0",
        " x ",
    ] {
        let s = Settings::parse(
            MINIMAL,
            env(&[
                ("EXACTLY__KAFKA__TRANSACTIONAL_ID", value),
                ("EXACTLY__KAFKA__GROUP_ID", value),
                ("EXACTLY__LOG__LEVEL", "info"),
            ]),
        );
        // Some of these are not legal ids under static membership; the
        // value must reach that check unchanged either way.
        match s {
            Ok(s) => {
                assert_eq!(s.kafka.transactional_id.as_deref(), Some(value));
                assert_eq!(s.kafka.group_id, value);
            }
            Err(ConfigError::Invalid { message, .. }) => {
                assert!(
                    message.contains(&format!("`{value}`")),
                    "{value}: {message}"
                );
            }
            Err(e) => panic!("{value}: {e}"),
        }
    }
    let s = Settings::parse(
        MINIMAL,
        env(&[("EXACTLY__KAFKA__CLIENT__SASL_PASSWORD", "0042")]),
    )
    .unwrap();
    assert_eq!(s.kafka.client["sasl.password"], "0042");
}

#[test]
fn environment_numbers_and_booleans_are_checked_and_name_the_variable() {
    let s = Settings::parse(
        MINIMAL,
        env(&[
            ("EXACTLY__PROCESSING__COMMIT_INTERVAL_MS", "250"),
            ("EXACTLY__KAFKA__STATIC_MEMBERSHIP", "FALSE"),
            ("EXACTLY__OUTPUT__LINEAGE", "true"),
        ]),
    )
    .unwrap();
    assert_eq!(s.processing.commit_interval_ms, 250);
    assert!(!s.kafka.static_membership);
    assert!(s.output.lineage);
    for (var, value, expected) in [
        (
            "EXACTLY__PROCESSING__COMMIT_INTERVAL_MS",
            "1e5",
            "an integer",
        ),
        ("EXACTLY__PROCESSING__WORKERS", "two", "an integer"),
        (
            "EXACTLY__KAFKA__STATIC_MEMBERSHIP",
            "yes",
            "`true` or `false`",
        ),
        ("EXACTLY__OUTPUT__LINEAGE", "1", "`true` or `false`"),
    ] {
        let (_, msg) = err_of(MINIMAL, env(&[(var, value)]));
        assert!(
            msg.contains(var) && msg.contains(&format!("`{value}`")) && msg.ends_with(expected),
            "{var}={value}: {msg}"
        );
    }
}

#[test]
fn environment_lists_split_on_commas_and_keep_each_item_a_string() {
    let s = Settings::parse(
        MINIMAL,
        env(&[("EXACTLY__INPUT__TOPICS", "0042, 1e5,orders")]),
    )
    .unwrap();
    assert_eq!(s.input.topics, vec!["0042", "1e5", "orders"]);
    let s = Settings::parse(MINIMAL, env(&[("EXACTLY__INPUT__TOPICS", "7")])).unwrap();
    assert_eq!(s.input.topics, vec!["7"]);
}

#[test]
fn every_key_has_a_kind_the_environment_honours() {
    let kinds = super::env::kinds();
    use super::env::Kind::*;
    assert_eq!(kinds["kafka.transactional_id"], Text);
    assert_eq!(kinds["kafka.static_membership"], Boolean);
    assert_eq!(kinds["processing.max_batch_bytes"], Integer);
    assert_eq!(kinds["input.topics"], List);
    assert_eq!(kinds["dead_letter.topic"], Text);
    assert_eq!(kinds["output.allow_routes_to_input"], Boolean);
    assert!(!kinds.contains_key("transform"));
}

#[test]
fn errors_in_the_file_point_at_line_column_and_text() {
    let text = MINIMAL.replace(
        "commit_interval_ms = 100 ",
        "commit_interval_ms = \"fast\" ",
    );
    match Settings::parse_file(&text, "exactly.toml", no_env()) {
        Err(e @ ConfigError::Invalid { .. }) => {
            let shown = e.to_string();
            assert!(
                shown.contains("(exactly.toml:20:22: `\"fast\"`)"),
                "{shown}"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn unknown_librdkafka_properties_are_refused_offline_with_a_suggestion() {
    let (key, msg) = err_of(
        &MINIMAL.replace("\"session.timeout.ms\"", "\"sesion.timeout.ms\""),
        no_env(),
    );
    assert_eq!(key, "kafka.consumer.\"sesion.timeout.ms\"");
    assert!(msg.ends_with("did you mean `session.timeout.ms`?"), "{msg}");
    let (key, msg) = err_of(
        MINIMAL,
        env(&[("EXACTLY__KAFKA__PRODUCER__COMPRESSION_TYPE", "zstdd")]),
    );
    assert_eq!(key, "kafka.producer.\"compression.type\"");
    assert!(msg.contains("zstdd"), "{msg}");
}

#[test]
fn ids_that_cannot_be_a_group_instance_id_are_refused() {
    let (key, msg) = err_of(
        &MINIMAL.replace("\"orders-enricher-0\"", "\"orders enricher/0\""),
        no_env(),
    );
    assert_eq!(key, "kafka.transactional_id");
    assert!(msg.contains("group.instance.id"), "{msg}");
    // Without static membership any transactional id goes.
    Settings::parse(
        &MINIMAL.replace("\"orders-enricher-0\"", "\"orders enricher/0\""),
        env(&[("EXACTLY__KAFKA__STATIC_MEMBERSHIP", "false")]),
    )
    .unwrap();
    // The default id is made from the group id.
    let no_id = MINIMAL.replace(
        "transactional_id = \"orders-enricher-0\"",
        "group_id_unused = 0",
    );
    let no_id = no_id.replace("group_id_unused = 0", "");
    let (key, _) = err_of(&no_id, env(&[("EXACTLY__KAFKA__GROUP_ID", "a b")]));
    assert_eq!(key, "kafka.group_id");
}

#[test]
fn duplicate_inputs_and_routes_into_an_input_are_refused() {
    let (key, msg) = err_of(
        &MINIMAL.replace("[\"orders\"]", "[\"orders\", \"x\", \"orders\"]"),
        no_env(),
    );
    assert_eq!(key, "input.topics[2]");
    assert!(msg.contains("twice"), "{msg}");
    let routed = format!(
        "{MINIMAL}\n[[transform]]\ntype = \"route\"\nexpr = 'if .retry then \"orders\" else null end'\n"
    );
    let (key, msg) = err_of(&routed, no_env());
    assert_eq!(key, "transform[0].expr");
    assert!(msg.contains("allow_routes_to_input"), "{msg}");
    let allowed = routed.replace("[output]\n", "[output]\nallow_routes_to_input = true\n");
    Settings::parse(&allowed, no_env()).unwrap();
}

#[test]
fn a_step_name_used_twice_is_refused_naming_both_steps() {
    let text = format!(
        "{MINIMAL}\n[[transform]]\ntype = \"filter\"\nname = \"checks\"\nexpr = '.ok'\n\
         [[transform]]\ntype = \"map\"\nexpr = '.'\n\
         [[transform]]\ntype = \"map\"\nname = \"checks\"\nexpr = '.'\n"
    );
    let (key, msg) = err_of(&text, no_env());
    assert_eq!(key, "transform[3].name");
    assert!(
        msg.contains("`checks`") && msg.contains("transform[1]"),
        "{msg}"
    );
    let distinct = text.replacen("name = \"checks\"", "name = \"first\"", 1);
    assert!(Settings::parse(&distinct, no_env()).is_ok());
}

#[test]
fn the_least_commit_interval_defaults_to_the_most_and_never_exceeds_it() {
    // Unset: the fixed cadence.
    let s = Settings::parse(MINIMAL, no_env()).unwrap();
    assert_eq!(s.processing.min_commit_interval_ms, None);
    assert_eq!(s.processing.effective_min_commit_interval_ms(), 100);
    // Early closes, from the environment too.
    let s = Settings::parse(
        MINIMAL,
        env(&[("EXACTLY__PROCESSING__MIN_COMMIT_INTERVAL_MS", "50")]),
    )
    .unwrap();
    assert_eq!(s.processing.effective_min_commit_interval_ms(), 50);
    // Above it: refused, naming both.
    let (key, msg) = err_of(
        MINIMAL,
        env(&[("EXACTLY__PROCESSING__MIN_COMMIT_INTERVAL_MS", "101")]),
    );
    assert_eq!(key, "processing.min_commit_interval_ms");
    assert!(
        msg.contains("101 ms") && msg.contains("processing.commit_interval_ms (100 ms)"),
        "{msg}"
    );
}
