//! TLS for the gRPC link between the planes, as a client sees it (data planes and routerctl):
//! an `https://` control-plane URL is verified against `--ca-cert` (a PEM file: the private CA
//! that signed the control plane's certificate) or, without it, the public web roots; with
//! `--client-cert` and `--client-key` the client also presents a certificate (mutual TLS, for a
//! control plane started with `--client-ca-cert`).
use std::path::Path;

use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

/// Where a client's TLS material is (every field optional).
#[derive(Debug, Clone, Copy, Default)]
pub struct ClientTls<'a> {
    /// PEM CA certificate(s) to verify the server with.
    pub ca_cert: Option<&'a Path>,
    /// PEM certificate chain to present.
    pub client_cert: Option<&'a Path>,
    /// PEM private key of `client_cert`.
    pub client_key: Option<&'a Path>,
}

/// Reads a PEM file named by `flag`, with an error naming both.
pub fn read_pem(flag: &str, path: &Path) -> Result<Vec<u8>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{flag} {}: {e}", path.display()))?;
    if !bytes.windows(11).any(|w| w == b"-----BEGIN ") {
        return Err(format!("{flag} {}: not a PEM file (no -----BEGIN line)", path.display()));
    }
    Ok(bytes)
}

impl ClientTls<'_> {
    /// The TLS configuration for a connection to `url`: `None` for `http://` (then no TLS file
    /// may be given); for `https://`, the CA (or the web roots) and the client identity.
    pub fn config(&self, url: &str) -> Result<Option<ClientTlsConfig>, String> {
        let https = url.starts_with("https://");
        if !https {
            let given = [
                ("--ca-cert", self.ca_cert),
                ("--client-cert", self.client_cert),
                ("--client-key", self.client_key),
            ];
            if let Some((flag, _)) = given.iter().find(|(_, path)| path.is_some()) {
                return Err(format!("{flag} is for an https:// control plane, and {url:?} is not one"));
            }
            return Ok(None);
        }
        let mut config = ClientTlsConfig::new();
        config = match self.ca_cert {
            Some(path) => config.ca_certificate(Certificate::from_pem(read_pem("--ca-cert", path)?)),
            None => config.with_webpki_roots(),
        };
        match (self.client_cert, self.client_key) {
            (Some(cert), Some(key)) => {
                let identity =
                    Identity::from_pem(read_pem("--client-cert", cert)?, read_pem("--client-key", key)?);
                config = config.identity(identity);
            }
            (None, None) => {}
            _ => return Err("--client-cert and --client-key go together".to_owned()),
        }
        Ok(Some(config))
    }

    /// `endpoint` (for `url`) with TLS set up as [`ClientTls::config`] says.
    pub fn apply(&self, url: &str, endpoint: Endpoint) -> Result<Endpoint, String> {
        match self.config(url)? {
            Some(config) => endpoint.tls_config(config).map_err(|e| format!("TLS for {url:?}: {e}")),
            None => Ok(endpoint),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_urls_take_no_tls_files_and_pairs_go_together() {
        let dir = std::env::temp_dir().join(format!("router-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pem = dir.join("ca.pem");
        std::fs::write(&pem, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n").unwrap();
        let not_pem = dir.join("ca.txt");
        std::fs::write(&not_pem, "hello").unwrap();

        assert!(ClientTls::default().config("http://127.0.0.1:50051").unwrap().is_none());
        let with_ca = ClientTls { ca_cert: Some(&pem), ..ClientTls::default() };
        let error = with_ca.config("http://127.0.0.1:50051").unwrap_err();
        assert!(error.starts_with("--ca-cert is for an https://"), "{error}");
        assert!(with_ca.config("https://cp.internal:50051").unwrap().is_some());
        assert!(ClientTls::default().config("https://cp.example:50051").unwrap().is_some(), "web roots");

        let bad = ClientTls { ca_cert: Some(&not_pem), ..ClientTls::default() };
        assert!(bad.config("https://cp:1").unwrap_err().contains("not a PEM file"));
        let missing = ClientTls { ca_cert: Some(Path::new("/nonexistent/ca.pem")), ..ClientTls::default() };
        assert!(missing.config("https://cp:1").unwrap_err().starts_with("--ca-cert /nonexistent/ca.pem: "));
        let half = ClientTls { client_cert: Some(&pem), ..with_ca };
        assert_eq!(half.config("https://cp:1").unwrap_err(), "--client-cert and --client-key go together");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
