//! `routerctl topup`, `adjust` and `ledger`: moving money and the record of every movement.
use clap::Args;
use router_proto::{Money, pb};
use serde::Serialize;

use crate::{
    args,
    client::Admin,
    error::Error,
    output::{self, Output, Record, or_unset},
};

/// Flags of `topup`.
#[derive(Debug, Args)]
pub struct TopupArgs {
    /// The account to credit.
    #[arg(long, value_name = "NAME", value_parser = args::name)]
    pub account: String,
    /// How much to credit.
    #[arg(long, value_name = "X", value_parser = args::money)]
    pub amount: Money,
}

/// Flags of `adjust`.
#[derive(Debug, Args)]
pub struct AdjustArgs {
    /// The account to credit or debit.
    #[arg(long, value_name = "NAME", value_parser = args::name)]
    pub account: String,
    /// Positive credits, negative debits (e.g. --amount=-5).
    #[arg(long, value_name = "X", value_parser = args::signed_money, allow_negative_numbers = true)]
    pub amount: Money,
    /// Why, for the ledger.
    #[arg(long, value_name = "TEXT", default_value = "")]
    pub note: String,
}

/// Flags of `ledger`.
#[derive(Debug, Args)]
pub struct LedgerArgs {
    /// Only this account's entries.
    #[arg(long, value_name = "NAME", value_parser = args::name)]
    pub account: Option<String>,
    /// How many entries, newest first.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub limit: Option<u32>,
}

/// Credits an account.
pub async fn topup(args: TopupArgs, admin: &mut Admin, out: &mut Output) -> Result<(), Error> {
    let request = pb::TopUpRequest { account: args.account, amount_nanos: args.amount.nanos() };
    let change = admin.top_up(request).await?.into_inner();
    out.record(&BalanceChangeView::new(&change))
}

/// Credits or debits an account by an operator's decision.
pub async fn adjust(args: AdjustArgs, admin: &mut Admin, out: &mut Output) -> Result<(), Error> {
    let request =
        pb::AdjustRequest { account: args.account, amount_nanos: args.amount.nanos(), note: args.note };
    let change = admin.adjust(request).await?.into_inner();
    out.record(&BalanceChangeView::new(&change))
}

/// Lists ledger entries, newest first.
pub async fn ledger(args: LedgerArgs, admin: &mut Admin, out: &mut Output) -> Result<(), Error> {
    let request = pb::ListLedgerRequest { account: args.account, limit: args.limit };
    let entries = admin.list_ledger(request).await?.into_inner().entries;
    let views: Vec<LedgerEntryView> = entries.iter().map(LedgerEntryView::new).collect();
    out.records(&views)
}

/// The result of a top-up or adjustment.
#[derive(Debug, Serialize)]
pub struct BalanceChangeView {
    account: String,
    amount: String,
    balance: String,
    ledger_id: i64,
}

impl BalanceChangeView {
    /// The display form of a proto balance change.
    pub fn new(change: &pb::BalanceChange) -> BalanceChangeView {
        BalanceChangeView {
            account: change.account.clone(),
            amount: output::money(change.amount_nanos),
            balance: output::money(change.balance_nanos),
            ledger_id: change.ledger_id,
        }
    }
}

impl Record for BalanceChangeView {
    const COLUMNS: &'static [&'static str] = &["account", "amount", "balance", "ledger_id"];

    fn fields(&self) -> Vec<(&'static str, String)> {
        vec![
            ("account", self.account.clone()),
            ("amount", self.amount.clone()),
            ("balance", self.balance.clone()),
            ("ledger_id", self.ledger_id.to_string()),
        ]
    }
}

/// One ledger entry for display.
#[derive(Debug, Serialize)]
pub struct LedgerEntryView {
    id: i64,
    account: String,
    kind: String,
    amount: String,
    balance_after: String,
    request_id: Option<String>,
    note: String,
    created_at: String,
}

impl LedgerEntryView {
    /// The display form of a proto ledger entry.
    pub fn new(entry: &pb::LedgerEntry) -> LedgerEntryView {
        LedgerEntryView {
            id: entry.id,
            account: entry.account.clone(),
            kind: entry.kind.clone(),
            amount: output::money(entry.amount_nanos),
            balance_after: output::money(entry.balance_after_nanos),
            request_id: entry.request_id.clone(),
            note: entry.note.clone(),
            created_at: output::time(entry.created_at_unix_micros),
        }
    }
}

impl Record for LedgerEntryView {
    const COLUMNS: &'static [&'static str] =
        &["id", "created_at", "account", "kind", "amount", "balance_after", "request_id", "note"];

    fn fields(&self) -> Vec<(&'static str, String)> {
        let note = if self.note.is_empty() { output::UNSET.to_owned() } else { self.note.clone() };
        vec![
            ("id", self.id.to_string()),
            ("account", self.account.clone()),
            ("kind", self.kind.clone()),
            ("amount", self.amount.clone()),
            ("balance_after", self.balance_after.clone()),
            ("request_id", or_unset(self.request_id.as_ref())),
            ("note", note),
            ("created_at", self.created_at.clone()),
        ]
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn parse(line: &[&str]) -> Result<Command, clap::Error> {
        Cli::try_parse_from(std::iter::once("routerctl").chain(line.iter().copied())).map(|cli| cli.command)
    }

    #[test]
    fn adjust_takes_negative_amounts_and_topup_does_not() {
        for line in [
            &["adjust", "--account", "bob", "--amount=-5"][..],
            &["adjust", "--account", "bob", "--amount", "-5"],
        ] {
            let Ok(Command::Adjust(adjust)) = parse(line) else { panic!("not adjust: {line:?}") };
            assert_eq!(adjust.amount.nanos(), -5_000_000_000);
        }
        assert!(parse(&["topup", "--account", "bob", "--amount=-5"]).is_err());
        assert!(parse(&["topup", "--account", "bob", "--amount", "1.0000000001"]).is_err());
        let Ok(Command::Topup(topup)) = parse(&["topup", "--account", "bob", "--amount", "10"]) else {
            panic!("not topup")
        };
        assert_eq!(topup.amount.nanos(), 10_000_000_000);
    }

    #[test]
    fn ledger_entries_render_as_json() {
        let entry = pb::LedgerEntry {
            id: 9,
            account: "bob".into(),
            kind: "usage".into(),
            amount_nanos: -14_000,
            balance_after_nanos: 9_999_986_000,
            request_id: Some("0190b5a2-aaaa".into()),
            note: String::new(),
            created_at_unix_micros: 0,
        };
        assert_eq!(
            serde_json::to_value(LedgerEntryView::new(&entry)).expect("views serialize"),
            serde_json::json!({
                "id": 9, "account": "bob", "kind": "usage", "amount": "-0.000014",
                "balance_after": "9.999986", "request_id": "0190b5a2-aaaa", "note": "",
                "created_at": "1970-01-01T00:00:00Z",
            })
        );
    }
}
