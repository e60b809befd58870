//! The secured broker: SASL_SSL (SCRAM, PLAIN, OAUTHBEARER) and mTLS
//! listeners, ACLs enforced by the StandardAuthorizer, certificates and
//! passwords made per run by `scripts/kafka.sh start DIR --secure`. The
//! harness itself (topics, inputs, outputs, ACLs) talks to the broker's
//! PLAINTEXT listener as a super user; the daemon under test uses a secured
//! listener with a principal that has only the ACLs the test grants.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use super::{repo_path, Broker, BROKER};

pub struct Secure {
    pub dir: PathBuf,
    env: HashMap<String, String>,
}

static SECURE: OnceLock<Secure> = OnceLock::new();

/// The secured broker of this test binary: the one in
/// `EXACTLY_TEST_SECURE_DIR` (started by scripts/test.sh), or one of its own.
/// It also becomes [`super::broker`], through its PLAINTEXT listener.
pub fn secure() -> &'static Secure {
    SECURE.get_or_init(|| {
        let (dir, owned) = match std::env::var("EXACTLY_TEST_SECURE_DIR") {
            Ok(dir) => (PathBuf::from(dir), None),
            Err(_) => {
                let tmp = tempfile::Builder::new()
                    .prefix("exactly-test-secure")
                    .tempdir()
                    .expect("temp dir");
                let ok = Command::new(repo_path("scripts/kafka.sh"))
                    .arg("start")
                    .arg(tmp.path())
                    .arg("--secure")
                    .arg("--owner-pid")
                    .arg(std::process::id().to_string())
                    .stdout(Stdio::null())
                    .status()
                    .expect("run scripts/kafka.sh")
                    .success();
                assert!(ok, "scripts/kafka.sh start --secure failed");
                (tmp.path().to_owned(), Some(tmp))
            }
        };
        let text = std::fs::read_to_string(dir.join("secure.env")).expect("secure.env");
        let env: HashMap<String, String> = text
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            .collect();
        let bootstrap = env["KAFKA_BOOTSTRAP_PLAINTEXT"].clone();
        assert!(
            BROKER
                .set(Broker {
                    bootstrap,
                    replication: 1,
                    _dir: owned
                })
                .is_ok(),
            "secure() must come before anything else uses the broker"
        );
        Secure { dir, env }
    })
}

impl Secure {
    fn get(&self, key: &str) -> &str {
        self.env
            .get(key)
            .unwrap_or_else(|| panic!("{key} missing from secure.env"))
    }

    /// The SASL_SSL listener.
    pub fn sasl_ssl(&self) -> &str {
        self.get("KAFKA_BOOTSTRAP_SASL_SSL")
    }

    /// The mTLS listener.
    pub fn ssl(&self) -> &str {
        self.get("KAFKA_BOOTSTRAP_SSL")
    }

    pub fn ca(&self) -> &str {
        self.get("KAFKA_CA")
    }

    /// The file holding `user`'s password.
    pub fn password_file(&self, user: &str) -> String {
        self.get(&format!(
            "KAFKA_PASSWORD_FILE_{}",
            user.to_ascii_uppercase()
        ))
        .to_owned()
    }

    pub fn password(&self, user: &str) -> String {
        std::fs::read_to_string(self.password_file(user))
            .unwrap()
            .trim()
            .to_owned()
    }

    /// `[kafka.client]` for `user` over SASL_SSL with `mechanism`; the
    /// password comes from its file through a reference, as a mounted
    /// Kubernetes Secret would.
    pub fn sasl_client_toml(&self, mechanism: &str, user: &str) -> String {
        format!(
            "[kafka.client]\n\
             \"security.protocol\" = \"SASL_SSL\"\n\
             \"sasl.mechanism\" = \"{mechanism}\"\n\
             \"sasl.username\" = \"{user}\"\n\
             \"sasl.password\" = \"${{file:{}}}\"\n\
             \"ssl.ca.location\" = \"{}\"\n",
            self.password_file(user),
            self.ca()
        )
    }

    /// `[kafka.client]` for the mTLS listener with the client certificate,
    /// whose key's passphrase comes from `$passphrase_env`.
    pub fn mtls_client_toml(&self, passphrase_env: &str) -> String {
        format!(
            "[kafka.client]\n\
             \"security.protocol\" = \"SSL\"\n\
             \"ssl.ca.location\" = \"{}\"\n\
             \"ssl.certificate.location\" = \"{}\"\n\
             \"ssl.key.location\" = \"{}\"\n\
             \"ssl.key.password\" = \"${{env:{passphrase_env}}}\"\n",
            self.ca(),
            self.get("KAFKA_CLIENT_CERT"),
            self.get("KAFKA_CLIENT_KEY"),
        )
    }

    /// The passphrase of the client certificate's key.
    pub fn client_key_password(&self) -> String {
        std::fs::read_to_string(self.get("KAFKA_CLIENT_KEY_PASSWORD_FILE"))
            .unwrap()
            .trim()
            .to_owned()
    }

    /// The principal the broker gives the client certificate.
    pub fn client_principal(&self) -> &str {
        self.get("KAFKA_CLIENT_PRINCIPAL")
    }

    pub fn stranger_cert(&self) -> (&str, &str) {
        (
            self.get("KAFKA_STRANGER_CERT"),
            self.get("KAFKA_STRANGER_KEY"),
        )
    }

    /// Runs Kafka's ACL tool against the broker, e.g.
    /// `["--add", "--allow-principal", "User:exactly", "--operation", "Read", "--topic", "t"]`.
    pub fn acl(&self, args: &[&str]) {
        let out = Command::new(repo_path("scripts/kafka.sh"))
            .arg("acl")
            .arg(&self.dir)
            .args(args)
            .output()
            .expect("run scripts/kafka.sh acl");
        assert!(
            out.status.success(),
            "kafka.sh acl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
