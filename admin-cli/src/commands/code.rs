//! `routerctl code …`: redemption codes that key holders turn into balance, once.
use clap::{Args, Subcommand};
use router_proto::{Money, pb};
use serde::Serialize;

use crate::{
    args,
    client::Admin,
    error::Error,
    output::{self, Output, Record, or_unset},
};

/// Code subcommands.
#[derive(Debug, Subcommand)]
pub enum CodeCommand {
    /// Create redemption codes, each worth the amount.
    Create(CreateArgs),
    /// List redemption codes (id and first characters) and whether they were redeemed.
    List,
}

/// Flags of `code create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// What each code credits.
    #[arg(long, value_name = "X", value_parser = args::money)]
    pub amount: Money,
    /// How many codes to create.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub count: u32,
}

/// Runs a code subcommand.
pub async fn run(command: CodeCommand, admin: &mut Admin, out: &mut Output) -> Result<(), Error> {
    match command {
        CodeCommand::Create(create) => {
            let request = pb::CreateCodesRequest { amount_nanos: create.amount.nanos(), count: create.count };
            let codes = admin.create_codes(request).await?.into_inner().codes;
            let views: Vec<NewCodeView> = codes.iter().map(NewCodeView::new).collect();
            out.records(&views)
        }
        CodeCommand::List => {
            let codes = admin.list_codes(pb::ListCodesRequest {}).await?.into_inner().codes;
            let views: Vec<CodeView> = codes.iter().map(CodeView::new).collect();
            out.records(&views)
        }
    }
}

/// A code just created: the only time its text is shown (it is stored hashed).
#[derive(Debug, Serialize)]
pub struct NewCodeView {
    id: i64,
    code: String,
    amount: String,
    created_at: String,
}

impl NewCodeView {
    /// The display form of a new proto code.
    pub fn new(code: &pb::RedemptionCode) -> NewCodeView {
        NewCodeView {
            id: code.id,
            code: code.code.clone(),
            amount: output::money(code.amount_nanos),
            created_at: output::time(code.created_at_unix_micros),
        }
    }
}

impl Record for NewCodeView {
    const COLUMNS: &'static [&'static str] = &["id", "code", "amount", "created_at"];

    fn fields(&self) -> Vec<(&'static str, String)> {
        vec![
            ("id", self.id.to_string()),
            ("code", self.code.clone()),
            ("amount", self.amount.clone()),
            ("created_at", self.created_at.clone()),
        ]
    }
}

/// A code (its id and first characters: the code itself is stored hashed) and its
/// redemption, if any.
#[derive(Debug, Serialize)]
pub struct CodeView {
    id: i64,
    prefix: String,
    amount: String,
    redeemed: bool,
    redeemed_by: Option<String>,
    redeemed_at: Option<String>,
    created_at: String,
}

impl CodeView {
    /// The display form of a proto code.
    pub fn new(code: &pb::RedemptionCode) -> CodeView {
        CodeView {
            id: code.id,
            prefix: code.prefix.clone(),
            amount: output::money(code.amount_nanos),
            redeemed: code.redeemed_by.is_some() || code.redeemed_at_unix_micros.is_some(),
            redeemed_by: code.redeemed_by.clone(),
            redeemed_at: output::opt_time(code.redeemed_at_unix_micros),
            created_at: output::time(code.created_at_unix_micros),
        }
    }
}

impl Record for CodeView {
    const COLUMNS: &'static [&'static str] =
        &["id", "prefix", "amount", "redeemed", "redeemed_by", "redeemed_at", "created_at"];

    fn fields(&self) -> Vec<(&'static str, String)> {
        vec![
            ("id", self.id.to_string()),
            ("prefix", self.prefix.clone()),
            ("amount", self.amount.clone()),
            ("redeemed", self.redeemed.to_string()),
            ("redeemed_by", or_unset(self.redeemed_by.as_ref())),
            ("redeemed_at", or_unset(self.redeemed_at.as_ref())),
            ("created_at", self.created_at.clone()),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_render_as_json() {
        let code = pb::RedemptionCode {
            id: 7,
            code: "RC-1".into(),
            prefix: "RC-1".into(),
            amount_nanos: 5_000_000_000,
            redeemed_by: Some("bob".into()),
            redeemed_at_unix_micros: Some(2_000_000),
            created_at_unix_micros: 1_000_000,
        };
        assert_eq!(
            serde_json::to_value(CodeView::new(&code)).expect("views serialize"),
            serde_json::json!({
                "id": 7, "prefix": "RC-1", "amount": "5", "redeemed": true, "redeemed_by": "bob",
                "redeemed_at": "1970-01-01T00:00:02Z", "created_at": "1970-01-01T00:00:01Z",
            })
        );
        assert_eq!(
            serde_json::to_value(NewCodeView::new(&code)).expect("views serialize"),
            serde_json::json!({"id": 7, "code": "RC-1", "amount": "5", "created_at": "1970-01-01T00:00:01Z"})
        );
    }
}
