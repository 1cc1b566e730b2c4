//! Authentication methods (SCRAM-SHA-256, md5, cleartext; password from the connection
//! string, `PGPASSWORD` and `~/.pgpass`) and TLS (`sslmode` require / verify-ca /
//! verify-full, SCRAM channel binding) against real servers.

mod support;

use std::sync::OnceLock;

use pgsub::conn::Connection;
use pgsub::conninfo::Conninfo;
use pgsub_testkit::{self as cluster, Cluster, ClusterOptions};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use support::*;

/// A CA, and a server certificate it signed for `names`.
struct Pki {
    ca_pem: String,
    cert_pem: String,
    key_pem: String,
}

fn pki(names: &[&str]) -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let params =
        CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    Pki {
        ca_pem: ca_cert.pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    }
}

/// One TLS cluster for this file, its certificate valid for 127.0.0.1 only, and the CA
/// file path.
fn tls_cluster() -> &'static (Cluster, std::path::PathBuf) {
    static C: OnceLock<(Cluster, std::path::PathBuf)> = OnceLock::new();
    C.get_or_init(|| {
        let p = pki(&["127.0.0.1"]);
        let c = Cluster::start(ClusterOptions {
            ssl: Some((p.cert_pem, p.key_pem)),
            ..ClusterOptions::default()
        })
        .unwrap();
        let ca = c.data_dir().parent().unwrap().join("test-ca.pem");
        std::fs::write(&ca, p.ca_pem).unwrap();
        c.psql(
            "postgres",
            "CREATE ROLE tls_user LOGIN REPLICATION PASSWORD 'tls-pass';
             CREATE TABLE t (id int); CREATE PUBLICATION p FOR TABLE t;",
        )
        .unwrap();
        (c, ca)
    })
}

fn tls_conninfo(extra: &str) -> String {
    let (c, _) = tls_cluster();
    format!(
        "host=127.0.0.1 port={} user=tls_user password=tls-pass dbname=postgres {extra}",
        c.port()
    )
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// Connects with the library and asks the server whether the session is encrypted.
fn server_sees_ssl(conninfo: &str) -> Result<bool, String> {
    let info = Conninfo::parse(conninfo).unwrap();
    block_on(async {
        let mut conn = Connection::connect(&info, true)
            .await
            .map_err(|e| e.to_string())?;
        let rows = conn
            .simple_query("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .await
            .map_err(|e| e.to_string())?;
        let ssl = rows[0].get("ssl") == Some("t");
        assert_eq!(ssl, conn.is_tls());
        conn.close().await;
        Ok(ssl)
    })
}

#[test]
fn sslmode_require_encrypts_without_checking_the_certificate() {
    assert_eq!(server_sees_ssl(&tls_conninfo("sslmode=require")), Ok(true));
    assert_eq!(server_sees_ssl(&tls_conninfo("sslmode=prefer")), Ok(true));
    assert_eq!(server_sees_ssl(&tls_conninfo("sslmode=disable")), Ok(false));
}

#[test]
fn verify_full_accepts_the_right_ca_and_host() {
    let (_, ca) = tls_cluster();
    let info = tls_conninfo(&format!("sslmode=verify-full sslrootcert={}", ca.display()));
    assert_eq!(server_sees_ssl(&info), Ok(true));
}

#[test]
fn verify_full_refuses_a_certificate_of_another_ca() {
    let other = pki(&["127.0.0.1"]);
    let dir = tempdir("other-ca");
    let ca = dir.join("other-ca.pem");
    std::fs::write(&ca, other.ca_pem).unwrap();
    let err = server_sees_ssl(&tls_conninfo(&format!(
        "sslmode=verify-full sslrootcert={}",
        ca.display()
    )))
    .unwrap_err();
    assert!(err.contains("TLS handshake"), "{err}");
    // The same through the binary: exit 2, the reason named.
    let out = run(&[
        "slot",
        "list",
        "--source",
        &tls_conninfo(&format!("sslmode=verify-ca sslrootcert={}", ca.display())),
    ])
    .expect_code(2);
    assert!(out.stderr.contains("TLS handshake"), "{}", out.stderr);
}

#[test]
fn verify_ca_ignores_the_host_name_and_verify_full_does_not() {
    let (c, ca) = tls_cluster();
    // The certificate names 127.0.0.1; connect by the name localhost instead.
    let by_name = |mode: &str| {
        format!(
            "host=localhost hostaddr=127.0.0.1 port={} user=tls_user password=tls-pass dbname=postgres sslmode={mode} sslrootcert={}",
            c.port(),
            ca.display()
        )
    };
    assert_eq!(server_sees_ssl(&by_name("verify-ca")), Ok(true));
    let err = server_sees_ssl(&by_name("verify-full")).unwrap_err();
    assert!(err.contains("TLS handshake"), "{err}");
}

#[test]
fn verify_full_without_a_root_certificate_says_where_to_put_one() {
    let out = run_with(
        pgsub()
            .args([
                "slot",
                "list",
                "--source",
                &tls_conninfo("sslmode=verify-full"),
            ])
            .env("HOME", tempdir("no-root")),
    )
    .expect_code(2);
    assert!(out.stderr.contains("sslrootcert"), "{}", out.stderr);
}

#[test]
fn channel_binding_require_works_over_tls_and_refuses_plain_connections() {
    assert_eq!(
        server_sees_ssl(&tls_conninfo("sslmode=require channel_binding=require")),
        Ok(true),
        "SCRAM-SHA-256-PLUS with tls-server-end-point"
    );
    let err =
        server_sees_ssl(&tls_conninfo("sslmode=disable channel_binding=require")).unwrap_err();
    assert!(err.contains("channel_binding=require"), "{err}");
}

#[test]
fn sslmode_require_against_a_server_without_tls_exits_2() {
    let c = cluster::shared();
    let out = run(&[
        "slot",
        "list",
        "--source",
        &format!("{} sslmode=require", c.conninfo("postgres")),
    ])
    .expect_code(2);
    assert!(out.stderr.contains("does not accept TLS"), "{}", out.stderr);
}

fn tempdir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("pgsub-test-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The three password methods, each through a different way of giving the password.
#[test]
fn scram_md5_and_cleartext_passwords_from_conninfo_env_and_pgpass() {
    let c = cluster::shared();
    let db = c.create_database("auth").unwrap();
    sql(
        c,
        &db,
        &format!(
            "CREATE ROLE {db}_scram LOGIN REPLICATION PASSWORD 'p-scram';
             SET password_encryption = 'md5';
             CREATE ROLE {db}_md5 LOGIN REPLICATION PASSWORD 'p-md5' IN ROLE pgsub_md5;
             CREATE ROLE {db}_clear LOGIN REPLICATION PASSWORD 'p-clear' IN ROLE pgsub_password;"
        ),
    );
    let base = |user: &str| format!("host=127.0.0.1 port={} dbname={db} user={user}", c.port());
    // SCRAM, password in the connection string.
    run(&[
        "slot",
        "list",
        "--source",
        &format!("{} password=p-scram", base(&format!("{db}_scram"))),
    ])
    .expect_code(0);
    // md5, password from PGPASSWORD.
    run_with(
        pgsub()
            .args(["slot", "list", "--source", &base(&format!("{db}_md5"))])
            .env("PGPASSWORD", "p-md5"),
    )
    .expect_code(0);
    // cleartext, password from ~/.pgpass (private file, wildcard database).
    let home = tempdir("pgpass-home");
    let pgpass = home.join(".pgpass");
    std::fs::write(
        &pgpass,
        format!("127.0.0.1:{}:*:{db}_clear:p-clear\n", c.port()),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&pgpass, std::fs::Permissions::from_mode(0o600)).unwrap();
    run_with(
        pgsub()
            .args(["slot", "list", "--source", &base(&format!("{db}_clear"))])
            .env("HOME", &home),
    )
    .expect_code(0);
    // A world-readable .pgpass is ignored, as libpq does: no password, exit 2.
    std::fs::set_permissions(&pgpass, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = run_with(
        pgsub()
            .args(["slot", "list", "--source", &base(&format!("{db}_clear"))])
            .env("HOME", &home),
    )
    .expect_code(2);
    assert!(out.stderr.contains("permissions"), "{}", out.stderr);
    // The PG* variables fill what the connection string leaves out.
    run_with(
        pgsub()
            .args(["slot", "list", "--source", ""])
            .env("PGHOST", "127.0.0.1")
            .env("PGPORT", c.port().to_string())
            .env("PGDATABASE", &db)
            .env("PGUSER", format!("{db}_scram"))
            .env("PGPASSWORD", "p-scram"),
    )
    .expect_code(0);
}

/// `service=` through a service file, as libpq reads it, for the replication connection and
/// for the plain SQL sessions (`status` uses both), with its password never shown.
#[test]
fn a_service_from_pg_service_conf_connects_and_its_password_stays_secret() {
    let c = cluster::shared();
    let db = c.create_database("service").unwrap();
    sql(
        c,
        &db,
        &format!("CREATE ROLE {db}_svc LOGIN REPLICATION PASSWORD 'svc-Secret-1'"),
    );
    let dir = tempdir("service");
    let file = dir.join("pg_service.conf");
    std::fs::write(
        &file,
        format!(
            "# the source\n[src]\nhost=127.0.0.1\nport={}\ndbname={db}\nuser={db}_svc\npassword=svc-Secret-1\n",
            c.port()
        ),
    )
    .unwrap();
    let out = run_with(
        pgsub()
            .args(["status", "--source", "service=src", "--dest", "service=src"])
            .env("PGSERVICEFILE", &file),
    )
    .expect_code(0);
    assert!(!out.stdout.contains("svc-Secret-1"), "{}", out.stdout);
    assert!(!out.stderr.contains("svc-Secret-1"), "{}", out.stderr);
    // PGSERVICE names it too, and the connection string still wins over the file.
    let out = run_with(
        pgsub()
            .args(["slot", "list", "--source", "dbname=nosuchdb"])
            .env("PGSERVICEFILE", &file)
            .env("PGSERVICE", "src"),
    )
    .expect_code(2);
    assert!(out.stderr.contains("nosuchdb"), "{}", out.stderr);
    assert!(!out.stderr.contains("svc-Secret-1"), "{}", out.stderr);
    // An unknown service is a usage error naming the files looked in.
    let out = run_with(
        pgsub()
            .args(["slot", "list", "--source", "service=nope"])
            .env("PGSERVICEFILE", &file)
            .env("PGSYSCONFDIR", &dir),
    )
    .expect_code(2);
    assert!(
        out.stderr
            .contains("definition of service \"nope\" not found"),
        "{}",
        out.stderr
    );
}
