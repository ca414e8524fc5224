//! TLS between the planes, with certificates made in the test (rcgen): a control plane with
//! `--tls-cert`/`--tls-key` is reached over `https://` by routerctl and data planes that trust
//! its CA (`--ca-cert`), and by nobody else; with `--client-ca-cert` (mutual TLS) only clients
//! presenting a certificate that CA signed get in.
use std::{path::Path, process::Output};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use router_tests::{
    Backend, ControlPlane, DataPlane, TestDb, eventually, http_client::post_json, mock::MockUpstream,
    random_name, routerctl,
};
use serde_json::json;
use std::time::Duration;

/// A CA, and files of certificates it signed.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        Ca { issuer: CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap() }
    }

    /// Writes the CA certificate to `dir/NAME.pem`; returns its path.
    fn write(&self, dir: &Path, name: &str) -> String {
        let path = dir.join(format!("{name}.pem"));
        std::fs::write(&path, self.issuer.pem()).unwrap();
        path.display().to_string()
    }

    /// A certificate for `names`, signed by this CA: `(cert path, key path)` in `dir`.
    fn issue(&self, dir: &Path, file: &str, names: &[&str]) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let params =
            CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>()).unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let (cert_path, key_path) = (dir.join(format!("{file}.crt")), dir.join(format!("{file}.key")));
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        (cert_path.display().to_string(), key_path.display().to_string())
    }
}

/// routerctl against `endpoint` with `tls` (its TLS flags) before `args`.
fn ctl(endpoint: &str, admin_token: &str, tls: &[&str], args: &[&str]) -> Output {
    routerctl(endpoint, admin_token, &[tls, args].concat())
}

fn https(cp: &ControlPlane) -> String {
    cp.endpoint.replace("http://", "https://")
}

fn ok(output: &Output) -> String {
    assert!(output.status.success(), "routerctl failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn refused(output: &Output) -> String {
    assert!(!output.status.success(), "routerctl succeeded: {}", String::from_utf8_lossy(&output.stdout));
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A data plane following `cp` over `https://` with `env` (its TLS files) serves a chat
/// request of `key`, and its usage report reaches the control plane (which held `before`
/// records), read by routerctl with `tls` (its TLS flags).
async fn serves_over_tls(
    cp: &mut ControlPlane,
    dir: &Path,
    key: &str,
    env: &[(&str, &str)],
    tls: &[&str],
    before: usize,
) {
    let secure = https(cp);
    let plain = std::mem::replace(&mut cp.endpoint, secure);
    let dp = DataPlane::start_with_env(cp, &dir.join(format!("spool-{}", random_name(6))), &[], env).await;
    cp.endpoint = plain;
    let dp = dp.unwrap();
    let url = format!("{}/v1/chat/completions", dp.url);
    let body = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]});
    let bearer = format!("Bearer {key}");
    let last = std::sync::Mutex::new(String::new());
    let served = eventually(Duration::from_secs(10), || async {
        let answer = post_json(&url, &[("authorization", bearer.as_str())], &body).await.ok()?;
        *last.lock().unwrap() = format!("{} {}", answer.status, answer.text());
        (answer.status == 200).then_some(())
    })
    .await;
    assert!(
        served.is_some(),
        "the data plane never served over a TLS control-plane link (last answer {}): {}",
        last.lock().unwrap(),
        dp.process.log()
    );
    let endpoint = https(cp);
    let records = || {
        let text = ok(&ctl(&endpoint, &cp.admin_token, tls, &["--json", "usage", "--limit", "100"]));
        serde_json::from_str::<serde_json::Value>(&text).unwrap().as_array().unwrap().len()
    };
    let recorded = eventually(Duration::from_secs(10), || async { (records() > before).then_some(()) }).await;
    assert!(recorded.is_some(), "the usage report never arrived over TLS");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_planes_talk_over_tls_and_mutual_tls() {
    let db = TestDb::create(Backend::Sqlite).await.unwrap();
    let dir = db.dir.clone();
    let ca = Ca::new("Code Router test CA");
    let ca_pem = ca.write(&dir, "ca");
    let (server_cert, server_key) = ca.issue(&dir, "server", &["127.0.0.1", "localhost"]);
    let (client_cert, client_key) = ca.issue(&dir, "client", &["data-plane"]);
    let rogue = Ca::new("Someone else");
    let rogue_pem = rogue.write(&dir, "rogue");
    let (rogue_cert, rogue_key) = rogue.issue(&dir, "rogue-client", &["data-plane"]);
    let (admin, node) = (format!("adm-{}", random_name(24)), format!("node-{}", random_name(24)));
    let mock = MockUpstream::start(3).await;

    // TLS: routerctl and a data plane that trust the CA get in; nobody else does.
    let tls = [("ROUTER_CP_TLS_CERT", server_cert.as_str()), ("ROUTER_CP_TLS_KEY", server_key.as_str())];
    let mut cp = ControlPlane::start_with(&db.url, &admin, &node, &tls).unwrap();
    let endpoint = https(&cp);
    let trusted = ["--ca-cert", ca_pem.as_str()];
    let with = |extra: &[&str], args: &[&str]| ctl(&endpoint, &admin, extra, args);
    let base_url = format!("{}/v1", mock.url);
    ok(&with(
        &trusted,
        &[
            "channel",
            "add",
            "--name",
            "c",
            "--type",
            "openai",
            "--base-url",
            &base_url,
            "--api-key",
            "sk-up",
            "--models",
            "gpt-4o-mini",
        ],
    ));
    ok(&with(&trusted, &["model", "set", "gpt-4o-mini", "--input-price", "1", "--output-price", "2"]));
    ok(&with(&trusted, &["account", "add", "acme", "--balance", "10"]));
    let created: serde_json::Value =
        serde_json::from_str(&ok(&with(&trusted, &["--json", "key", "create", "--account", "acme"])))
            .unwrap();
    let key = created["key"].as_str().unwrap().to_owned();
    let error = refused(&with(&[], &["account", "list"]));
    assert!(error.contains("certificate"), "without the CA: {error}");
    let error = refused(&with(&["--ca-cert", &rogue_pem], &["account", "list"]));
    assert!(error.contains("certificate"), "with another CA: {error}");
    let error = refused(&routerctl(&cp.endpoint, &admin, &["account", "list"]));
    assert!(!error.is_empty(), "plain HTTP/2 to a TLS port");
    let error = refused(&routerctl(&cp.endpoint, &admin, &["--ca-cert", &ca_pem, "account", "list"]));
    assert!(error.contains("--ca-cert is for an https:// control plane"), "{error}");
    serves_over_tls(&mut cp, &dir, &key, &[("ROUTER_CA_CERT", &ca_pem)], &trusted, 0).await;
    cp.process.terminate(Duration::from_secs(5)).unwrap();

    // Mutual TLS: the client must also present a certificate the client CA signed.
    let mutual = [tls[0], tls[1], ("ROUTER_CP_CLIENT_CA_CERT", ca_pem.as_str())];
    let mut cp = ControlPlane::start_with(&db.url, &admin, &node, &mutual).unwrap();
    assert!(cp.process.log().contains("client_certificates=true"), "{}", cp.process.log());
    let endpoint = https(&cp);
    let with = |extra: &[&str], args: &[&str]| ctl(&endpoint, &admin, extra, args);
    refused(&with(&trusted, &["account", "list"]));
    refused(&with(
        &["--ca-cert", &ca_pem, "--client-cert", &rogue_cert, "--client-key", &rogue_key],
        &["account", "list"],
    ));
    let error = refused(&with(&["--ca-cert", &ca_pem, "--client-cert", &client_cert], &["account", "list"]));
    assert!(error.contains("--client-cert and --client-key go together"), "{error}");
    let identified = [
        "--ca-cert",
        ca_pem.as_str(),
        "--client-cert",
        client_cert.as_str(),
        "--client-key",
        client_key.as_str(),
    ];
    assert!(ok(&with(&identified, &["account", "list"])).contains("acme"));
    let env = [
        ("ROUTER_CA_CERT", ca_pem.as_str()),
        ("ROUTER_CLIENT_CERT", client_cert.as_str()),
        ("ROUTER_CLIENT_KEY", client_key.as_str()),
    ];
    serves_over_tls(&mut cp, &dir, &key, &env, &identified, 1).await;
}

/// `curl` against the data plane over HTTPS, trusting `ca`: `(status, HTTP version, body)`.
fn curl(ca: &str, url: &str, extra: &[&str]) -> Option<(u16, String, String)> {
    let output = std::process::Command::new("curl")
        .args(["-sS", "--max-time", "5", "--cacert", ca, "-w", "\n%{http_code} %{http_version}"])
        .args(extra)
        .arg(url)
        .output()
        .expect("curl runs");
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, status_line) = text.rsplit_once('\n')?;
    let (status, version) = status_line.split_once(' ')?;
    Some((status.parse().ok()?, version.to_owned(), body.to_owned()))
}

/// `--tls-cert` / `--tls-key` on the data plane: its API over HTTPS (HTTP/2 and HTTP/1.1 by
/// ALPN), requests served and billed as over plain HTTP; plain HTTP to that port is not served,
/// and a client that never finishes the handshake is dropped at the header timeout.
#[tokio::test(flavor = "multi_thread")]
async fn the_data_plane_serves_https() {
    let db = TestDb::create(Backend::Sqlite).await.unwrap();
    let dir = db.dir.clone();
    let ca = Ca::new("Code Router test CA");
    let ca_pem = ca.write(&dir, "ca");
    let (cert, key) = ca.issue(&dir, "dp", &["127.0.0.1", "localhost"]);
    let mut cp = ControlPlane::start(&db).unwrap();
    let mock = MockUpstream::start(3).await;
    cp.add_channel("c", "openai", &format!("{}/v1", mock.url), "sk-up", "gpt-4o-mini", &[]);
    cp.json(&["model", "set", "gpt-4o-mini", "--input-price", "1", "--output-price", "2"]);
    cp.json(&["account", "add", "acme", "--balance", "10"]);
    let key_secret = cp.json(&["key", "create", "--account", "acme"])["key"].as_str().unwrap().to_owned();

    let mut command = std::process::Command::new(router_tests::bin("router-data-plane"));
    command
        .args([
            "--listen",
            "127.0.0.1:0",
            "--control-plane",
            &cp.endpoint,
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
        ])
        .args(["--header-read-timeout", "1"])
        .arg("--spool-dir")
        .arg(dir.join("spool"))
        .env("ROUTER_NODE_TOKEN", &cp.node_token)
        .env_remove("ROUTER_DP_LISTEN");
    let mut dp = router_tests::Process::spawn(command).unwrap();
    let line = dp.wait_for_line("listening on ", Duration::from_secs(60)).unwrap();
    let address = line.rsplit("listening on ").next().unwrap().trim().to_owned();
    let base = format!("https://127.0.0.1:{}", address.rsplit(':').next().unwrap());
    let ready = eventually(Duration::from_secs(30), || async {
        curl(&ca_pem, &format!("{base}/readyz"), &[]).filter(|(status, ..)| *status == 200)
    })
    .await;
    let (_, version, _) = ready.unwrap_or_else(|| panic!("never ready over HTTPS: {}", dp.log()));
    assert_eq!(version, "2", "HTTP/2 by ALPN");
    assert!(dp.log().contains("serving HTTPS"), "{}", dp.log());

    let body = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}).to_string();
    let auth = format!("authorization: Bearer {key_secret}");
    for http in ["--http1.1", "--http2"] {
        let args =
            [http, "-H", auth.as_str(), "-H", "content-type: application/json", "--data", body.as_str()];
        let answer = eventually(Duration::from_secs(10), || async {
            curl(&ca_pem, &format!("{base}/v1/chat/completions"), &args).filter(|(status, ..)| *status == 200)
        })
        .await;
        let (_, version, text) = answer.unwrap_or_else(|| panic!("{http}: not served: {}", dp.log()));
        assert_eq!(version, if http == "--http2" { "2" } else { "1.1" });
        assert!(text.contains("chat.completion"), "{text}");
    }
    let billed = eventually(Duration::from_secs(10), || async {
        let records = cp.json(&["usage", "--limit", "10"]);
        (records.as_array()?.len() == 2).then_some(())
    })
    .await;
    assert!(billed.is_some(), "both requests billed");

    // Plain HTTP to the TLS port is not served; an unfinished handshake is dropped.
    let plain = std::process::Command::new("curl")
        .args(["-sS", "--max-time", "5", &format!("http://{address}/readyz")])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&plain.stdout).contains("ready"), "plain HTTP was served");
    let opened = std::time::Instant::now();
    let mut silent = tokio::net::TcpStream::connect(&address).await.unwrap();
    let mut buffer = Vec::new();
    let read = tokio::time::timeout(
        Duration::from_secs(8),
        tokio::io::AsyncReadExt::read_to_end(&mut silent, &mut buffer),
    )
    .await;
    assert!(read.is_ok(), "a silent client still held its connection after 8 s");
    assert!(opened.elapsed() >= Duration::from_millis(900), "closed before the header timeout");
    cp.process.terminate(Duration::from_secs(5)).unwrap();
}
