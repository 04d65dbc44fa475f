//! Bad provider settings end as Terraform errors that say what to fix — never a crash, and
//! never a wait past `timeout_seconds`: an unreachable endpoint, a CA that is not the
//! cluster's, an expired client certificate.

mod common;

use std::time::Duration;

use common::Workspace;

fn main_tf(provider: &str) -> String {
    format!(
        r#"terraform {{
  required_providers {{
    tribune = {{ source = "tribune/tribune" }}
  }}
}}

provider "tribune" {{
{provider}
}}

data "tribune_cluster" "this" {{}}
"#
    )
}

/// A client certificate like the harness's, signed by the cluster's CA, that expired a day ago.
fn expired_cert(tls_dir: &std::path::Path, out: &std::path::Path) -> (String, String) {
    let ca_pem = std::fs::read_to_string(tls_dir.join("ca.pem")).expect("ca.pem");
    let ca_key =
        rcgen::KeyPair::from_pem(&std::fs::read_to_string(tls_dir.join("ca.key")).expect("ca.key"))
            .expect("CA key");
    let issuer = rcgen::Issuer::from_ca_cert_pem(&ca_pem, ca_key).expect("issuer");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    let uri = tribune_testkit::tls::test_client().uri();
    params
        .subject_alt_names
        .push(rcgen::SanType::URI(uri.try_into().expect("identity URI")));
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "admin test (expired)");
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(3);
    params.not_after = now - time::Duration::days(1);
    params.is_ca = rcgen::IsCa::NoCa;
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = params.signed_by(&key, &issuer).expect("sign");
    let (c, k) = (out.join("expired.pem"), out.join("expired.key"));
    std::fs::write(&c, cert.pem()).expect("write");
    std::fs::write(&k, key.serialize_pem()).expect("write");
    (c.display().to_string(), k.display().to_string())
}

#[test]
fn bad_settings_are_errors_that_say_what_to_fix() {
    let Some(terraform) = common::terraform("bad_settings_are_errors_that_say_what_to_fix") else {
        return;
    };
    let cluster = common::cluster();
    let tls_dir = cluster.tls_dir.clone().expect("TLS");
    let files = tribune_testkit::tls::client_files(&tls_dir);
    let endpoint = cluster.endpoint_list().join(",");
    let ws = Workspace::new(terraform, vec![]);
    eprintln!("terraform: {}", ws.version());

    // Unreachable: a port nobody listens on. The error names the setting; the run ends soon
    // after the 3 s timeout (Terraform's own start-up included).
    let port = tribune_testkit::free_port();
    ws.write(
        "main.tf",
        &main_tf(&format!(
            "  endpoints = [\"http://127.0.0.1:{port}\"]\n  timeout_seconds = 3"
        )),
    );
    let r = ws.run(&["plan", "-no-color"]);
    assert_eq!(r.code, 1, "{r}");
    assert!(
        r.out.contains("no Tribune controller answered within 3s"),
        "{r}"
    );
    assert!(r.out.contains("`endpoints`"), "{r}");
    assert!(r.took < Duration::from_secs(30), "{r}");
    assert!(!r.out.contains("panic"), "{r}");

    // A CA that is not the cluster's.
    let other = tribune_testkit::TestDir::new("tribune-tf-other-ca-");
    let other_files = tribune_testkit::tls::make_ca(other.path());
    ws.write(
        "main.tf",
        &main_tf(&format!(
            "  endpoints = [{endpoint:?}]\n  ca = {:?}\n  cert = {:?}\n  key = {:?}\n  timeout_seconds = 5",
            other_files.ca.display().to_string(),
            files.cert.display().to_string(),
            files.key.display().to_string()
        )),
    );
    let r = ws.run(&["plan", "-no-color"]);
    assert_eq!(r.code, 1, "{r}");
    assert!(r.out.contains("TLS handshake failed"), "{r}");
    assert!(
        r.out.contains("point `ca` at the cluster's CA certificate"),
        "{r}"
    );

    // An expired client certificate.
    let (cert, key) = expired_cert(&tls_dir, ws.dir.path());
    ws.write(
        "main.tf",
        &main_tf(&format!(
            "  endpoints = [{endpoint:?}]\n  ca = {:?}\n  cert = {cert:?}\n  key = {key:?}\n  timeout_seconds = 5",
            files.ca.display().to_string(),
        )),
    );
    let r = ws.run(&["plan", "-no-color"]);
    assert_eq!(r.code, 1, "{r}");
    assert!(r.out.contains("expired on"), "{r}");
    assert!(r.out.contains("tribune ca issue"), "{r}");

    // And the right settings work (so the failures above were the settings' fault).
    ws.write(
        "main.tf",
        &main_tf(&format!(
            "  endpoints = [{endpoint:?}]\n  ca = {:?}\n  cert = {:?}\n  key = {:?}",
            files.ca.display().to_string(),
            files.cert.display().to_string(),
            files.key.display().to_string()
        )),
    );
    let r = ws.run(&["plan", "-no-color"]);
    assert_eq!(r.code, 0, "{r}");
}

#[test]
fn run_by_hand_it_says_it_is_a_plugin() {
    let o = std::process::Command::new(common::PROVIDER)
        .env_remove("TF_PLUGIN_MAGIC_COOKIE")
        .output()
        .expect("run the provider");
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("Terraform provider plugin"), "{err}");
    assert!(o.stdout.is_empty(), "no handshake line for a person");
}
