# shellcheck shell=bash
# Secured broker mode for scripts/kafka.sh (`kafka.sh start DIR --secure`).
# Sourced by kafka.sh; defines functions only. Everything is made fresh per
# run inside DIR with openssl - nothing is downloaded.
#
# Listeners (all on 127.0.0.1, free ports):
#   PLAINTEXT  admin and inter-broker; principal User:ANONYMOUS, a super user.
#              DIR/bootstrap, so `topic`, `tool` and `acl` use it.
#   SASL_SSL   SCRAM-SHA-512, SCRAM-SHA-256, PLAIN, OAUTHBEARER; DIR/bootstrap.sasl_ssl
#   SSL        client certificate required; principal User:<CN>; DIR/bootstrap.ssl
#   CONTROLLER KRaft, plaintext
# Users exactly, admin, verifier exist for SCRAM (both hashes) and PLAIN with
# one password each. OAUTHBEARER takes any unsigned JWT, so its "sub" claim is
# the principal whoever sends it - including admin; it proves the client's
# OAUTHBEARER path, not the broker's security.
# Authorization: StandardAuthorizer, deny when no ACL matches, super users
# User:ANONYMOUS and User:admin. Everyone else needs ACLs (`kafka.sh acl`):
# topic Write to produce (idempotence needs nothing more), topic Read plus
# group Read to consume with a group, and TransactionalId Write + Describe
# for a transactional producer.
#
# Layout written into DIR:
#   tls/ca.pem, tls/ca.key                 the test CA (cert, unencrypted key)
#   tls/broker.pem                         broker key + cert + CA, PEM keystore
#                                          (SAN IP:127.0.0.1, DNS:localhost)
#   tls/client.pem, tls/client.key         mTLS client, CN=exactly-mtls, signed by the
#                                          test CA; the key is encrypted (PKCS#8, AES-256)
#   tls/stranger.pem, tls/stranger.key     CN=stranger, signed by another CA
#                                          (tls/stranger-ca.*), unencrypted key
#   secrets/client-key.password            passphrase of tls/client.key
#   secrets/<user>.password                password of exactly, admin, verifier
#   secure.env                             the summary below
# Every secrets/* file holds the secret only, without a trailing newline.
# Secrets are 32 hex characters, so they never need quoting anywhere.
#
# secure.env - KEY=VALUE lines, values never quoted (DIR is checked to hold no
# characters that would need it), so both `. DIR/secure.env` and a plain
# split at the first '=' read it:
#   KAFKA_BOOTSTRAP_PLAINTEXT      admin listener, principal User:ANONYMOUS (super user)
#   KAFKA_BOOTSTRAP_SASL_SSL       SASL over TLS: SCRAM-SHA-512, SCRAM-SHA-256, PLAIN,
#                                  OAUTHBEARER (unsecured JWTs are accepted)
#   KAFKA_BOOTSTRAP_SSL            TLS with required client certificates (mTLS)
#   KAFKA_SASL_MECHANISMS          comma-separated list of the mechanisms above
#   KAFKA_CA                       CA file that verifies the broker (and signs client.pem)
#   KAFKA_CLIENT_CERT              client.pem
#   KAFKA_CLIENT_KEY               client.key (encrypted)
#   KAFKA_CLIENT_KEY_PASSWORD_FILE secrets/client-key.password
#   KAFKA_CLIENT_PRINCIPAL         principal of client.pem on the SSL listener
#   KAFKA_STRANGER_CERT            stranger.pem (the broker must refuse it)
#   KAFKA_STRANGER_KEY             stranger.key (unencrypted)
#   KAFKA_USERS                    comma-separated SASL user names
#   KAFKA_PASSWORD_FILE_<USER>     secrets/<user>.password, <USER> upper-cased
#   KAFKA_SUPER_USERS              the broker's super.users, comma-separated

secure_users=(exactly admin verifier)
secure_mechanisms=SCRAM-SHA-512,SCRAM-SHA-256,PLAIN,OAUTHBEARER
secure_client_cn=exactly-mtls
secure_super_users='User:ANONYMOUS;User:admin'

secure_secret() { openssl rand -hex 16 | tr -d '\n'; }

# The properties file, the JAAS options and secure.env take DIR's path
# verbatim; refuse paths that would need quoting or escaping in any of them.
secure_check_dir() { # DIR
  case "$1" in
    *[!A-Za-z0-9._/+-]*) die "--secure needs a DIR path made of [A-Za-z0-9._/+-] only: $1" ;;
  esac
}

# secure_cert NAME CN SIGNER [EXTENSION...]: a P-256 key tls/NAME.key and a
# certificate tls/NAME.pem for CN, signed by tls/SIGNER.{pem,key}; SIGNER "-"
# makes it self-signed (a CA). P-256 rather than RSA: key generation is
# instant, and both Java's PEM keystore and librdkafka's OpenSSL accept it.
secure_cert() {
  local tls=$1 name=$2 cn=$3 signer=$4
  shift 4
  local ext=() e
  for e in "$@"; do ext+=(-addext "$e"); done
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$tls/$name.key" 2>/dev/null
  if [ "$signer" = - ]; then
    openssl req -x509 -new -key "$tls/$name.key" -subj "/CN=$cn" -days 30 \
      "${ext[@]}" -out "$tls/$name.pem" 2>/dev/null
  else
    # req -x509 with -CA (OpenSSL 3) signs in one step and keeps -addext.
    openssl req -x509 -new -key "$tls/$name.key" -subj "/CN=$cn" -days 30 \
      -CA "$tls/$signer.pem" -CAkey "$tls/$signer.key" \
      "${ext[@]}" -out "$tls/$name.pem" 2>/dev/null
  fi || die "openssl could not make the certificate $name"
}

secure_tls() { # DIR
  local dir=$1 tls=$1/tls
  rm -rf "$tls"
  mkdir -p "$tls"
  local ca=(basicConstraints=critical,CA:TRUE keyUsage=critical,keyCertSign,cRLSign)
  secure_cert "$tls" ca "exactly test CA" - "${ca[@]}"
  secure_cert "$tls" stranger-ca "stranger CA" - "${ca[@]}"
  local leaf=(basicConstraints=critical,CA:FALSE keyUsage=critical,digitalSignature,keyEncipherment)
  # librdkafka verifies the broker's host name by default (https), and clients
  # connect to 127.0.0.1: the IP must be in the subjectAltName.
  secure_cert "$tls" broker localhost ca "${leaf[@]}" \
    subjectAltName=IP:127.0.0.1,DNS:localhost extendedKeyUsage=serverAuth,clientAuth
  secure_cert "$tls" client "$secure_client_cn" ca "${leaf[@]}" extendedKeyUsage=clientAuth
  secure_cert "$tls" stranger stranger stranger-ca "${leaf[@]}" extendedKeyUsage=clientAuth
  # Kafka's PEM keystore: one file with the (unencrypted PKCS#8) key and the
  # chain. openssl genpkey already writes PKCS#8.
  cat "$tls/broker.key" "$tls/broker.pem" "$tls/ca.pem" >"$tls/broker-keystore.pem"
  # The client key is encrypted so tests exercise ssl.key.password.
  secure_secret >"$dir/secrets/client-key.password"
  openssl pkcs8 -topk8 -v2 aes-256-cbc -in "$tls/client.key" \
    -passout "file:$dir/secrets/client-key.password" -out "$tls/client.key.enc" \
    || die "openssl could not encrypt the client key"
  mv "$tls/client.key.enc" "$tls/client.key"
  chmod 600 "$tls"/*.key "$tls/broker-keystore.pem"
}

secure_passwords() { # DIR
  local u
  for u in "${secure_users[@]}"; do secure_secret >"$1/secrets/$u.password"; done
}

# The StorageTool arguments that store every user's SCRAM credentials in the
# cluster metadata at format time (KRaft has no ZooKeeper to put them in, and
# this way they exist before the first client connects).
secure_scram_args() { # DIR -> one argument per line
  local u m
  for u in "${secure_users[@]}"; do
    for m in SCRAM-SHA-512 SCRAM-SHA-256; do
      echo "--add-scram"
      echo "$m=[name=$u,password=$(cat "$1/secrets/$u.password")]"
    done
  done
}

# secure_properties DIR: the settings a secure broker adds to server.properties
# (its listener lines are written by kafka.sh's start).
secure_properties() {
  local dir=$1 u plain_users=""
  for u in "${secure_users[@]}"; do
    plain_users+=" user_$u=\"$(cat "$dir/secrets/$u.password")\""
  done
  cat <<EOF
# The controller and inter-broker traffic stay on PLAINTEXT listeners, where
# the principal is User:ANONYMOUS - a super user, so the node can talk to itself
# under the authorizer.
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=false
super.users=$secure_super_users
# TLS for both SASL_SSL and SSL: PEM files made by openssl, no keytool needed.
ssl.keystore.type=PEM
ssl.keystore.location=$dir/tls/broker-keystore.pem
ssl.truststore.type=PEM
ssl.truststore.location=$dir/tls/ca.pem
# Only the SSL listener asks for client certificates; SASL_SSL clients log in
# with SASL instead.
listener.name.ssl.ssl.client.auth=required
# The certificate's DN is "CN=<name>" (plus whatever follows); the principal is
# User:<name>.
ssl.principal.mapping.rules=RULE:^CN=([^,]*).*\$/\$1/,DEFAULT
sasl.enabled.mechanisms=$secure_mechanisms
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required$plain_users;
# No server callback handler is configured for OAUTHBEARER, so Kafka uses its
# unsecured JWT validator (alg "none", principal = the "sub" claim). The login
# options only matter for the broker's own token, which it never sends.
listener.name.sasl_ssl.oauthbearer.sasl.jaas.config=org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required unsecuredLoginStringClaim_sub="admin";
EOF
}

# secure_env DIR PLAINTEXT_PORT SASL_SSL_PORT SSL_PORT
secure_env() {
  local dir=$1 u
  cat <<EOF
KAFKA_BOOTSTRAP_PLAINTEXT=127.0.0.1:$2
KAFKA_BOOTSTRAP_SASL_SSL=127.0.0.1:$3
KAFKA_BOOTSTRAP_SSL=127.0.0.1:$4
KAFKA_SASL_MECHANISMS=$secure_mechanisms
KAFKA_CA=$dir/tls/ca.pem
KAFKA_CLIENT_CERT=$dir/tls/client.pem
KAFKA_CLIENT_KEY=$dir/tls/client.key
KAFKA_CLIENT_KEY_PASSWORD_FILE=$dir/secrets/client-key.password
KAFKA_CLIENT_PRINCIPAL=User:$secure_client_cn
KAFKA_STRANGER_CERT=$dir/tls/stranger.pem
KAFKA_STRANGER_KEY=$dir/tls/stranger.key
KAFKA_USERS=$(IFS=,; echo "${secure_users[*]}")
KAFKA_SUPER_USERS=${secure_super_users//;/,}
EOF
  for u in "${secure_users[@]}"; do
    echo "KAFKA_PASSWORD_FILE_$(echo "$u" | tr '[:lower:]' '[:upper:]')=$dir/secrets/$u.password"
  done
}

# secure_setup DIR PLAINTEXT_PORT SASL_SSL_PORT SSL_PORT
# Makes certificates and passwords, appends the secure settings to
# DIR/server.properties and writes the bootstrap.* files and secure.env.
secure_setup() {
  local dir=$1 port=$2 sport=$3 tport=$4
  secure_check_dir "$dir"
  rm -rf "$dir/secrets"
  mkdir -p "$dir/secrets"
  chmod 700 "$dir/secrets"
  secure_passwords "$dir"
  secure_tls "$dir"
  chmod 600 "$dir"/secrets/*
  secure_properties "$dir" >>"$dir/server.properties"
  echo "127.0.0.1:$sport" >"$dir/bootstrap.sasl_ssl"
  echo "127.0.0.1:$tport" >"$dir/bootstrap.ssl"
  secure_env "$dir" "$port" "$sport" "$tport" >"$dir/secure.env"
}
