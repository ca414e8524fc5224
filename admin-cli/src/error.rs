//! The one error type of routerctl and how every failure reads to an operator.
//!
//! Policy: clap reports its own usage errors (exit 2); everything else becomes an [`Error`]
//! whose message is printed as `error: <message>` and exits 1. gRPC statuses are translated
//! here, in one place, so every command words the same failure the same way.
use std::{error::Error as StdError, io};

use tonic::{Code, Status};

/// Everything that can make a routerctl command fail after its arguments were parsed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No admin token was given by flag or environment.
    #[error("no admin token: set --admin-token, ROUTER_ADMIN_TOKEN or --admin-token-file")]
    MissingToken,
    /// A value given on the command line or in the environment is unusable.
    #[error("{0}")]
    Invalid(String),
    /// The control plane could not be reached at all.
    #[error("cannot reach the control plane at {endpoint}: {detail}")]
    Unreachable {
        /// The endpoint that was tried.
        endpoint: String,
        /// What went wrong, with its causes.
        detail: String,
    },
    /// The control plane did not accept the admin token.
    #[error("the control plane refused the admin token (set --admin-token or ROUTER_ADMIN_TOKEN)")]
    Unauthenticated,
    /// The control plane refused or failed the request; the message is meant for people.
    #[error("{0}")]
    Server(String),
    /// A gRPC call failed; [`Error::for_endpoint`] turns it into one of the variants above.
    #[error("{}", .0.message())]
    Rpc(Box<Status>),
    /// Writing the result to stdout failed.
    #[error("cannot write output: {0}")]
    Output(#[from] io::Error),
}

impl From<Status> for Error {
    fn from(status: Status) -> Error {
        Error::Rpc(Box::new(status))
    }
}

impl Error {
    /// Words a failed call in terms of the control plane at `endpoint`; other errors pass as they are.
    pub fn for_endpoint(self, endpoint: &str) -> Error {
        match self {
            Error::Rpc(status) => Error::from_status(&status, endpoint),
            other => other,
        }
    }

    /// Translates a gRPC status from the control plane at `endpoint` into an operator's message.
    pub fn from_status(status: &Status, endpoint: &str) -> Error {
        let message = status.message();
        // An empty message would leave the operator with nothing; fall back to the code.
        let detail = if message.is_empty() { status.code().description() } else { message };
        match status.code() {
            Code::Unavailable => {
                let detail = match status.source() {
                    Some(source) => format!("{detail}: {}", error_chain(source)),
                    None => detail.to_owned(),
                };
                Error::Unreachable { endpoint: endpoint.to_owned(), detail }
            }
            Code::Unauthenticated => Error::Unauthenticated,
            Code::PermissionDenied => Error::Server(format!("permission denied: {detail}")),
            Code::DeadlineExceeded | Code::Cancelled => {
                Error::Server(format!("the control plane did not answer in time: {detail}"))
            }
            Code::Unimplemented => Error::Server(format!(
                "the control plane at {endpoint} does not support this command: {detail}"
            )),
            Code::Internal | Code::Unknown | Code::DataLoss => {
                Error::Server(format!("the control plane failed: {detail}"))
            }
            // NotFound, AlreadyExists, InvalidArgument, FailedPrecondition, …: the server's
            // message already says what is wrong in an operator's words.
            _ => Error::Server(detail.to_owned()),
        }
    }
}

/// Joins an error and its sources into one line, because transport errors hide the useful part
/// ("connection refused") several sources deep.
pub fn error_chain(error: &(dyn StdError + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        // Some layers repeat their source's message verbatim; say it once.
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_messages_pass_through() {
        let status = Status::not_found("account \"bob\" not found");
        let error = Error::from_status(&status, "http://x:1");
        assert_eq!(error.to_string(), "account \"bob\" not found");
        let status = Status::failed_precondition("");
        let error = Error::from_status(&status, "http://x:1");
        assert_eq!(error.to_string(), Code::FailedPrecondition.description());
    }

    #[test]
    fn auth_and_reachability_have_fixed_wording() {
        let error = Error::from_status(&Status::unauthenticated("bad token"), "http://x:1");
        assert!(error.to_string().contains("--admin-token or ROUTER_ADMIN_TOKEN"));
        let error = Error::from_status(&Status::unavailable("tcp connect error"), "http://x:1");
        assert_eq!(error.to_string(), "cannot reach the control plane at http://x:1: tcp connect error");
    }
}
