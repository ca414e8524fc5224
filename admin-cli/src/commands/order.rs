//! `routerctl order …`: top-up orders paid through the payment provider (Stripe Checkout).
use clap::{Args, Subcommand};
use router_proto::pb;
use serde::Serialize;

use crate::{
    client::Admin,
    error::Error,
    output::{self, Output, Record, or_unset},
};

/// Order subcommands.
#[derive(Debug, Subcommand)]
pub enum OrderCommand {
    /// List top-up orders, newest first, with their status (`pending`, `paid`, `expired`).
    List(ListArgs),
}

/// Flags of `order list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only this account's orders.
    #[arg(long, value_name = "NAME")]
    pub account: Option<String>,
    /// At most this many orders (default 100).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub limit: Option<u32>,
}

/// Runs an order subcommand.
pub async fn run(command: OrderCommand, admin: &mut Admin, out: &mut Output) -> Result<(), Error> {
    match command {
        OrderCommand::List(list) => {
            let request = pb::ListOrdersRequest { account: list.account, limit: list.limit };
            let orders = admin.list_orders(request).await?.into_inner().orders;
            let views: Vec<OrderView> = orders.iter().map(OrderView::new).collect();
            out.records(&views)
        }
    }
}

/// An order as routerctl shows it.
#[derive(Debug, Serialize)]
pub struct OrderView {
    id: i64,
    account: String,
    amount: String,
    currency: String,
    status: String,
    provider: String,
    session_id: Option<String>,
    created_at: String,
    paid_at: Option<String>,
}

impl OrderView {
    /// The display form of a proto order.
    pub fn new(order: &pb::Order) -> OrderView {
        OrderView {
            id: order.id,
            account: order.account.clone(),
            amount: output::money(order.amount_nanos),
            currency: order.currency.clone(),
            status: order.status.clone(),
            provider: order.provider.clone(),
            session_id: order.session_id.clone(),
            created_at: output::time(order.created_at_unix_micros),
            paid_at: output::opt_time(order.paid_at_unix_micros),
        }
    }
}

impl Record for OrderView {
    const COLUMNS: &'static [&'static str] =
        &["id", "account", "amount", "currency", "status", "provider", "session_id", "created_at", "paid_at"];

    fn fields(&self) -> Vec<(&'static str, String)> {
        vec![
            ("id", self.id.to_string()),
            ("account", self.account.clone()),
            ("amount", self.amount.clone()),
            ("currency", self.currency.clone()),
            ("status", self.status.clone()),
            ("provider", self.provider.clone()),
            ("session_id", or_unset(self.session_id.as_ref())),
            ("created_at", self.created_at.clone()),
            ("paid_at", or_unset(self.paid_at.as_ref())),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_render_as_json() {
        let order = pb::Order {
            id: 3,
            account: "acme".into(),
            provider: "stripe".into(),
            amount_nanos: 10_000_000_000,
            currency: "USD".into(),
            status: "paid".into(),
            session_id: Some("cs_1".into()),
            created_at_unix_micros: 1_000_000,
            paid_at_unix_micros: Some(2_000_000),
        };
        assert_eq!(
            serde_json::to_value(OrderView::new(&order)).expect("views serialize"),
            serde_json::json!({
                "id": 3, "account": "acme", "amount": "10", "currency": "USD", "status": "paid",
                "provider": "stripe", "session_id": "cs_1", "created_at": "1970-01-01T00:00:01Z",
                "paid_at": "1970-01-01T00:00:02Z",
            })
        );
    }
}
