//! Top-up orders through a payment provider. An order is created `pending`, gets the
//! provider's checkout session, and becomes `paid` exactly once — the account is credited in
//! the same transaction as that change, which a conditional update lets only one writer make,
//! so replayed, duplicated or concurrent webhooks credit nothing more — or `expired`.
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::now_micros;
use crate::{
    db::{
        Db, Posting, TxConn,
        schema::{accounts, payment_orders},
    },
    error::{StoreError, StoreResult},
    with_conn, write_tx,
};

/// Waiting for the provider.
pub const PENDING: &str = "pending";
/// Paid and credited.
pub const PAID: &str = "paid";
/// The checkout session expired unpaid.
pub const EXPIRED: &str = "expired";

/// An order as the operator sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    /// Row id (the order id shown to the payer).
    pub id: i64,
    /// The account credited.
    pub account_id: i64,
    /// Its name.
    pub account: String,
    /// `stripe`.
    pub provider: String,
    /// Amount in nano-units.
    pub amount: i64,
    /// The deployment's currency when ordered.
    pub currency: String,
    /// `pending`, `paid`, `expired`.
    pub status: String,
    /// The provider's checkout session.
    pub session_id: Option<String>,
    /// Where the payer pays.
    pub checkout_url: Option<String>,
    /// Unix micros.
    pub created_at: i64,
    /// Unix micros, once paid.
    pub paid_at: Option<i64>,
}

type Row = (i64, i64, String, String, i64, String, String, Option<String>, Option<String>, i64, Option<i64>);

fn order(
    (
        id,
        account_id,
        account,
        provider,
        amount,
        currency,
        status,
        session_id,
        checkout_url,
        created_at,
        paid_at,
    ): Row,
) -> Order {
    Order {
        id,
        account_id,
        account,
        provider,
        amount,
        currency,
        status,
        session_id,
        checkout_url,
        created_at,
        paid_at,
    }
}

macro_rules! order_columns {
    () => {
        (
            payment_orders::id,
            payment_orders::account_id,
            accounts::name,
            payment_orders::provider,
            payment_orders::amount,
            payment_orders::currency,
            payment_orders::status,
            payment_orders::session_id,
            payment_orders::checkout_url,
            payment_orders::created_at,
            payment_orders::paid_at,
        )
    };
}

/// A new pending order of `amount` for account `account_id`.
pub async fn create(
    db: &Db,
    account_id: i64,
    provider: &str,
    amount: i64,
    currency: &str,
) -> StoreResult<Order> {
    if amount <= 0 {
        return Err(StoreError::invalid("top-up amount must be positive"));
    }
    let now = now_micros();
    let id: i64 = write_tx!(db, |conn| {
        Ok(diesel::insert_into(payment_orders::table)
            .values((
                payment_orders::account_id.eq(account_id),
                payment_orders::provider.eq(provider),
                payment_orders::amount.eq(amount),
                payment_orders::currency.eq(currency),
                payment_orders::status.eq(PENDING),
                payment_orders::created_at.eq(now),
                payment_orders::updated_at.eq(now),
            ))
            .returning(payment_orders::id)
            .get_result(conn)
            .await?)
    })?;
    get(db, id).await
}

/// Records the provider's checkout session of a pending order.
pub async fn attach_session(db: &Db, id: i64, session_id: &str, checkout_url: &str) -> StoreResult<()> {
    let now = now_micros();
    write_tx!(db, |conn| {
        diesel::update(payment_orders::table.find(id))
            .set((
                payment_orders::session_id.eq(session_id),
                payment_orders::checkout_url.eq(checkout_url),
                payment_orders::updated_at.eq(now),
            ))
            .execute(conn)
            .await?;
        Ok(())
    })
}

/// One order.
pub async fn get(db: &Db, id: i64) -> StoreResult<Order> {
    let row: Option<Row> = with_conn!(db, |conn| {
        payment_orders::table
            .inner_join(accounts::table)
            .filter(payment_orders::id.eq(id))
            .select(order_columns!())
            .first(conn)
            .await
            .optional()?
    });
    row.map(order).ok_or_else(|| StoreError::NotFound(format!("order {id}")))
}

/// Whether the order of checkout session `session_id` is still pending (`None`: no order has
/// that session: one of another integration on the same provider account).
pub async fn pending(db: &Db, session_id: &str) -> StoreResult<Option<bool>> {
    let status: Option<String> = with_conn!(db, |conn| {
        payment_orders::table
            .filter(payment_orders::session_id.eq(session_id))
            .select(payment_orders::status)
            .first(conn)
            .await
            .optional()?
    });
    Ok(status.map(|status| status == PENDING))
}

/// Orders, newest first, of one account or all.
pub async fn list(db: &Db, account: Option<&str>, limit: i64) -> StoreResult<Vec<Order>> {
    let rows: Vec<Row> = with_conn!(db, |conn| {
        let mut query = payment_orders::table
            .inner_join(accounts::table)
            .select(order_columns!())
            .order(payment_orders::id.desc())
            .limit(limit)
            .into_boxed();
        if let Some(name) = account {
            query = query.filter(accounts::name.eq(name.to_owned()));
        }
        query.load(conn).await?
    });
    Ok(rows.into_iter().map(order).collect())
}

/// What a webhook did to an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The order became paid and its account was credited now.
    Credited,
    /// Nothing changed: the order was paid (or expired) before.
    Unchanged,
    /// The order became expired.
    Expired,
}

/// Marks the order of checkout session `session_id` paid and credits its account, once: only
/// the writer whose conditional update moves it from `pending` posts the credit. `amount_minor`
/// and `minor_per_unit`: what the provider says was paid, checked against the order.
pub async fn pay(db: &Db, session_id: &str, paid_nanos: i64, currency: &str) -> StoreResult<Outcome> {
    let now = now_micros();
    write_tx!(db, |conn| {
        let order: Option<(i64, i64, i64, String)> = payment_orders::table
            .filter(payment_orders::session_id.eq(session_id))
            .select((
                payment_orders::id,
                payment_orders::account_id,
                payment_orders::amount,
                payment_orders::currency,
            ))
            .first(conn)
            .await
            .optional()?;
        let Some((id, account_id, amount, ordered_currency)) = order else {
            return Err(StoreError::NotFound(format!("an order for checkout session {session_id}")));
        };
        if paid_nanos != amount || !ordered_currency.eq_ignore_ascii_case(currency) {
            return Err(StoreError::invalid(format!(
                "checkout session {session_id} paid {paid_nanos} nano-units of {currency}, not the order's {amount} of {ordered_currency}"
            )));
        }
        let claimed = diesel::update(
            payment_orders::table
                .filter(payment_orders::id.eq(id))
                .filter(payment_orders::status.eq(PENDING)),
        )
        .set((
            payment_orders::status.eq(PAID),
            payment_orders::paid_at.eq(now),
            payment_orders::updated_at.eq(now),
        ))
        .execute(conn)
        .await?;
        if claimed == 0 {
            return Ok(Outcome::Unchanged);
        }
        let note = format!("stripe {session_id} (order {id})");
        conn.post(Posting { account_id, kind: "topup", amount, request_id: None, note: &note, now }).await?;
        Ok(Outcome::Credited)
    })
}

/// Marks the pending order of checkout session `session_id` expired (a paid one stays paid).
pub async fn expire(db: &Db, session_id: &str) -> StoreResult<Outcome> {
    let now = now_micros();
    write_tx!(db, |conn| {
        let changed = diesel::update(
            payment_orders::table
                .filter(payment_orders::session_id.eq(session_id))
                .filter(payment_orders::status.eq(PENDING)),
        )
        .set((payment_orders::status.eq(EXPIRED), payment_orders::updated_at.eq(now)))
        .execute(conn)
        .await?;
        Ok(if changed == 0 { Outcome::Unchanged } else { Outcome::Expired })
    })
}
