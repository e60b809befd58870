//! Secrets: librdkafka property values that come from a mounted file or the
//! environment instead of the TOML, and the redaction of every secret value
//! from what the daemon writes (logs, errors, `check`).
//!
//! A value of a passthrough table may be a reference, the whole value:
//!
//! - `${file:/var/run/secrets/kafka/password}`: the file's content, without
//!   trailing line breaks (a Kubernetes Secret mounted as a volume);
//! - `${env:KAFKA_PASSWORD}`: the environment variable's value.
//!
//! Every value that came from a reference, and every value of a property
//! whose name marks it as secret ([`is_secret_key`]), is registered with the
//! process-wide redactor: the log writer and the command line's error output
//! replace it with `********` wherever it appears — librdkafka's own
//! configuration errors echo values, for one.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;
use std::sync::{OnceLock, RwLock};

/// What a secret looks like wherever the daemon writes.
pub const MASK: &str = "********";

/// librdkafka properties whose values must never be printed: passwords,
/// passphrases, private keys, client secrets, tokens and JAAS strings.
pub fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    k.contains("password")
        || k.contains("passphrase")
        || k.contains("secret")
        || k.contains("token")
        || k.contains("jaas")
        || k.ends_with(".key.pem")
        || k == "sasl.oauthbearer.config"
}

/// A property value after its reference, if any, was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The value librdkafka gets.
    pub value: String,
    /// It came from a file or the environment, or its property is secret:
    /// it must never be written anywhere.
    pub secret: bool,
}

/// The source a value names, if it is a reference.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Reference<'a> {
    File(&'a str),
    Env(&'a str),
}

fn reference(raw: &str) -> Result<Option<Reference<'_>>, String> {
    let Some(inner) = raw.strip_prefix("${").and_then(|r| r.strip_suffix('}')) else {
        return Ok(None);
    };
    match inner.split_once(':') {
        Some(("file", path)) if !path.is_empty() => Ok(Some(Reference::File(path))),
        Some(("env", name)) if !name.is_empty() => Ok(Some(Reference::Env(name))),
        _ => Err(format!(
            "`{raw}` is not a reference; use ${{file:/path/to/secret}} or ${{env:VARIABLE}}"
        )),
    }
}

/// Whether a raw value is a `${file:…}` or `${env:…}` reference (shown as
/// written by `check`: a reference is not itself secret).
pub fn is_reference(raw: &str) -> bool {
    matches!(reference(raw), Ok(Some(_)))
}

/// Reads the value of property `key` written as `raw`. The error names the
/// property and the file or variable, never the content.
pub fn resolve(key: &str, raw: &str) -> Result<Resolved, String> {
    resolve_with(key, raw, |name| std::env::var(name).ok())
}

/// [`resolve`] with an explicit environment, for tests.
pub fn resolve_with(
    key: &str,
    raw: &str,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Resolved, String> {
    let secret_key = is_secret_key(key);
    match reference(raw)? {
        None => Ok(Resolved {
            value: raw.to_owned(),
            secret: secret_key,
        }),
        Some(Reference::File(path)) => {
            let text = std::fs::read_to_string(Path::new(path))
                .map_err(|e| format!("cannot read the file `{path}` that `{key}` names: {e}"))?;
            Ok(Resolved {
                value: text.trim_end_matches(['\n', '\r']).to_owned(),
                secret: true,
            })
        }
        Some(Reference::Env(name)) => match env(name) {
            Some(value) => Ok(Resolved {
                value,
                secret: true,
            }),
            None => Err(format!(
                "the environment variable `{name}` that `{key}` names is not set"
            )),
        },
    }
}

fn registry() -> &'static RwLock<BTreeSet<String>> {
    static SECRETS: OnceLock<RwLock<BTreeSet<String>>> = OnceLock::new();
    SECRETS.get_or_init(|| RwLock::new(BTreeSet::new()))
}

/// Adds a value to what [`redact`] hides from now on.
pub fn register(value: &str) {
    if value.is_empty() {
        return;
    }
    if let Ok(mut set) = registry().write() {
        set.insert(value.to_owned());
    }
}

/// `text` with every registered secret replaced by [`MASK`]. Longer secrets
/// first, so that a secret containing another is hidden whole.
pub fn redact(text: &str) -> String {
    let Ok(set) = registry().read() else {
        return text.to_owned();
    };
    if set.is_empty() {
        return text.to_owned();
    }
    let mut secrets: Vec<&String> = set.iter().filter(|s| text.contains(s.as_str())).collect();
    if secrets.is_empty() {
        return text.to_owned();
    }
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    let mut out = text.to_owned();
    for s in secrets {
        out = if s.len() >= SHORT {
            out.replace(s.as_str(), MASK)
        } else {
            replace_tokens(&out, s)
        };
    }
    out
}

/// Secrets shorter than this are masked only where they stand alone, not
/// inside a longer word: a password `x` must not turn every "exactly" in the
/// log into "e********actly".
const SHORT: usize = 6;

/// `text` with each occurrence of `secret` that no letter or digit touches
/// replaced by [`MASK`].
fn replace_tokens(text: &str, secret: &str) -> String {
    let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric());
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(secret) {
        // The character before: in what is left, or at the end of what is done.
        let before = rest[..at].chars().last().or_else(|| out.chars().last());
        let after = rest[at + secret.len()..].chars().next();
        out.push_str(&rest[..at]);
        if word(before) || word(after) {
            out.push_str(secret);
        } else {
            out.push_str(MASK);
        }
        rest = &rest[at + secret.len()..];
    }
    out.push_str(rest);
    out
}

/// The log writer: standard error with every registered secret redacted.
/// The fmt layer writes each event with one `write_all`, so a secret is
/// never split across two writes.
#[derive(Debug, Clone, Copy, Default)]
pub struct RedactingStderr;

impl std::io::Write for RedactingStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        std::io::stderr().write_all(redact(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for RedactingStderr {
    type Writer = RedactingStderr;
    fn make_writer(&'a self) -> Self::Writer {
        RedactingStderr
    }
}

/// `eprintln!` for the command line: the message with secrets redacted.
pub fn eprint_line(message: &str) {
    let _ = writeln!(std::io::stderr(), "{}", redact(message));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_properties_are_recognised_by_name() {
        for k in [
            "sasl.password",
            "sasl.jaas.config",
            "ssl.key.password",
            "ssl.key.pem",
            "ssl.keystore.password",
            "sasl.oauthbearer.client.secret",
            "sasl.oauthbearer.config",
            "sasl.oauthbearer.assertion.private.key.passphrase",
            "SASL.PASSWORD",
        ] {
            assert!(is_secret_key(k), "{k}");
        }
        for k in [
            "sasl.username",
            "sasl.mechanism",
            "ssl.ca.location",
            "security.protocol",
        ] {
            assert!(!is_secret_key(k), "{k}");
        }
    }

    #[test]
    fn plain_values_pass_through_and_secret_names_mark_them() {
        let r = resolve_with("sasl.username", "alice", |_| None).unwrap();
        assert_eq!(r.value, "alice");
        assert!(!r.secret);
        let r = resolve_with("sasl.password", "hunter2", |_| None).unwrap();
        assert!(r.secret);
    }

    #[test]
    fn a_file_reference_reads_the_file_without_its_line_break() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pw");
        std::fs::write(&path, "s3cret\n").unwrap();
        let raw = format!("${{file:{}}}", path.display());
        let r = resolve_with("sasl.username", &raw, |_| None).unwrap();
        assert_eq!(r.value, "s3cret");
        // Whatever the property, a value from a file is treated as secret.
        assert!(r.secret);
    }

    #[test]
    fn an_env_reference_reads_the_variable() {
        let r = resolve_with("sasl.password", "${env:PW}", |n| {
            (n == "PW").then(|| "0042".to_owned())
        })
        .unwrap();
        assert_eq!(r.value, "0042");
    }

    #[test]
    fn a_broken_reference_names_the_property_and_the_source_not_a_value() {
        let e = resolve_with("sasl.password", "${file:/nonexistent/pw}", |_| None).unwrap_err();
        assert!(
            e.contains("sasl.password") && e.contains("/nonexistent/pw"),
            "{e}"
        );
        let e = resolve_with("sasl.password", "${env:NOPE}", |_| None).unwrap_err();
        assert!(e.contains("NOPE") && e.contains("not set"), "{e}");
        let e = resolve_with("sasl.password", "${vault:x}", |_| None).unwrap_err();
        assert!(e.contains("file:") && e.contains("env:"), "{e}");
    }

    #[test]
    fn a_short_secret_is_masked_where_it_stands_alone_not_inside_words() {
        register("xq");
        assert_eq!(
            redact("password=xq for exactly-xqz (xq)"),
            format!("password={MASK} for exactly-xqz ({MASK})")
        );
    }

    #[test]
    fn registered_secrets_are_redacted_longest_first() {
        register("redact-me-abc");
        register("redact-me-abcdef");
        let out = redact("a redact-me-abcdef b redact-me-abc c");
        assert_eq!(out, format!("a {MASK} b {MASK} c"));
        assert_eq!(redact("nothing here"), "nothing here");
    }
}
