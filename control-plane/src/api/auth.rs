//! Bearer-token checks for the two APIs: the admin token for `AdminService`, the node token
//! for `NodeService`. Tokens are compared in constant time (as SHA-256 digests, so their
//! lengths leak nothing either) and never logged.
use std::sync::Arc;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tonic::{Request, Status, service::Interceptor};

/// An interceptor that admits requests carrying `authorization: Bearer <token>`.
#[derive(Clone)]
pub struct BearerCheck {
    expected: Arc<[u8; 32]>,
    role: &'static str,
}

impl BearerCheck {
    /// Admits requests bearing `token`; `role` names the token in refusals.
    pub fn new(token: &str, role: &'static str) -> BearerCheck {
        BearerCheck { expected: Arc::new(Sha256::digest(token.as_bytes()).into()), role }
    }

    fn admits(&self, header: Option<&str>) -> bool {
        let Some(presented) = header.and_then(|h| h.strip_prefix("Bearer ")) else { return false };
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        digest.ct_eq(self.expected.as_ref()).into()
    }
}

impl Interceptor for BearerCheck {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let header = request.metadata().get("authorization").and_then(|v| v.to_str().ok());
        if self.admits(header) {
            Ok(request)
        } else {
            Err(Status::unauthenticated(format!("missing or wrong {} token", self.role)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_only_the_right_bearer() {
        let check = BearerCheck::new("s3cret", "admin");
        assert!(check.admits(Some("Bearer s3cret")));
        assert!(!check.admits(Some("Bearer s3cret ")));
        assert!(!check.admits(Some("Bearer other")));
        assert!(!check.admits(Some("s3cret")));
        assert!(!check.admits(Some("Basic s3cret")));
        assert!(!check.admits(None));
    }
}
