//! Switching from another gateway: a setup plus what only an import brings (keys made
//! elsewhere, opening balances, unused redemption codes), all in one transaction. Running the
//! same import again changes nothing: keys and codes already stored are `unchanged`, and an
//! opening balance is posted only to an account the import creates.
use std::collections::HashSet;

use super::{Action, Applied, Change, Kind, NewKey, Options, Setup, SetupTx, plan};
use crate::{
    db::{Db, Posting},
    error::{StoreError, StoreResult},
    store::{check_non_negative, clean_names, json_list, now_micros},
    write_tx,
};

/// A key whose secret was made elsewhere: stored by the hash of that secret.
#[derive(Debug, Clone, Default)]
pub struct ImportedKey {
    /// Owning account's name.
    pub account: String,
    /// Free name.
    pub name: String,
    /// Hex SHA-256 of the whole secret.
    pub secret_hash: String,
    /// The secret's first characters.
    pub prefix: String,
    /// Own group's name.
    pub group: Option<String>,
    /// Total spend cap.
    pub limit: Option<i64>,
    /// Allow-list.
    pub models: Vec<String>,
    /// Unix micros.
    pub expires_at: Option<i64>,
    /// Imported revoked.
    pub revoked: bool,
}

/// An opening balance.
#[derive(Debug, Clone, Default)]
pub struct ImportedBalance {
    /// The account's name.
    pub account: String,
    /// Nano-units, zero or more.
    pub amount: i64,
    /// Ledger note.
    pub note: String,
}

/// An unused redemption code.
#[derive(Debug, Clone, Default)]
pub struct ImportedCode {
    /// The code's text.
    pub code: String,
    /// What it credits.
    pub amount: i64,
}

/// What an import brings beyond a setup.
#[derive(Debug, Clone, Default)]
pub struct Imports {
    /// Keys.
    pub keys: Vec<ImportedKey>,
    /// Opening balances.
    pub balances: Vec<ImportedBalance>,
    /// Redemption codes.
    pub codes: Vec<ImportedCode>,
}

/// Applies `setup` (never pruning) and adds `imports`, in one transaction.
pub async fn import(db: &Db, setup: &Setup, imports: &Imports, options: Options) -> StoreResult<Applied> {
    let mut rehearsed = None;
    let outcome = write_tx!(db, |conn| {
        let mut applied = plan::run(conn, setup, false).await?;
        add(conn, &mut applied, imports).await?;
        if options.dry_run {
            rehearsed = Some(applied);
            return Err(StoreError::RolledBack);
        }
        Ok(applied)
    });
    match (outcome, rehearsed) {
        (Err(StoreError::RolledBack), Some(mut applied)) => {
            applied.version = None;
            Ok(applied)
        }
        (outcome, _) => outcome,
    }
}

fn about(kind: Kind, name: &str) -> impl FnOnce(StoreError) -> StoreError + '_ {
    move |error| match error {
        StoreError::Invalid(m) => StoreError::Invalid(format!("{} {name:?}: {m}", kind.as_str())),
        StoreError::NotFound(m) => StoreError::NotFound(format!("{} {name:?}: {m}", kind.as_str())),
        other => other,
    }
}

async fn version<C: SetupTx>(conn: &mut C, applied: &mut Applied) -> StoreResult<i64> {
    if let Some(version) = applied.version {
        return Ok(version);
    }
    let version = conn.bump_policy_version().await?;
    applied.version = Some(version);
    Ok(version)
}

async fn add<C: SetupTx>(conn: &mut C, applied: &mut Applied, imports: &Imports) -> StoreResult<()> {
    let now = now_micros();
    let created: HashSet<String> = applied
        .changes
        .iter()
        .filter(|c| c.kind == Kind::Account && c.action == Action::Create)
        .map(|c| c.name.clone())
        .collect();
    let mut changes: Vec<Change> = Vec::new();
    for key in &imports.keys {
        let action = add_key(conn, applied, key, now).await.map_err(about(Kind::Key, &key.prefix))?;
        changes.push(Change { kind: Kind::Key, name: key.prefix.clone(), action });
    }
    for balance in &imports.balances {
        check_non_negative("balance", balance.amount).map_err(about(Kind::Balance, &balance.account))?;
        let action = if created.contains(&balance.account) && balance.amount > 0 {
            let account_id =
                conn.account_id(&balance.account).await.map_err(about(Kind::Balance, &balance.account))?;
            let posting = Posting {
                account_id,
                kind: "topup",
                amount: balance.amount,
                request_id: None,
                note: &balance.note,
                now,
            };
            conn.post(posting).await?;
            Action::Create
        } else {
            Action::Unchanged
        };
        changes.push(Change { kind: Kind::Balance, name: balance.account.clone(), action });
    }
    for code in &imports.codes {
        if code.amount <= 0 || code.code.trim().is_empty() {
            return Err(StoreError::invalid(format!(
                "code {}…: needs a text and a positive amount",
                crate::store::codes::prefix(&code.code)
            )));
        }
        let action = if conn.has_code(&code.code).await? {
            Action::Unchanged
        } else {
            conn.insert_code(&code.code, code.amount, now).await?;
            Action::Create
        };
        // Named by its first characters: the code itself is a secret, stored hashed.
        let name = format!("{}…", crate::store::codes::prefix(&code.code));
        changes.push(Change { kind: Kind::Code, name, action });
    }
    applied.changes.extend(changes);
    Ok(())
}

async fn add_key<C: SetupTx>(
    conn: &mut C,
    applied: &mut Applied,
    key: &ImportedKey,
    now: i64,
) -> StoreResult<Action> {
    let hash = key.secret_hash.as_str();
    if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return Err(StoreError::invalid("secret hash must be 64 lowercase hex digits (SHA-256)"));
    }
    if key.prefix.is_empty() {
        return Err(StoreError::invalid("a key needs a prefix"));
    }
    if let Some(limit) = key.limit {
        check_non_negative("key limit", limit)?;
    }
    if conn.has_key(hash).await? {
        return Ok(Action::Unchanged);
    }
    let account_id = conn.account_id(&key.account).await?;
    let group_id = match &key.group {
        Some(group) => Some(conn.group_id(group).await?),
        None => None,
    };
    let version = version(conn, applied).await?;
    conn.insert_key(&NewKey {
        account_id,
        name: &key.name,
        prefix: &key.prefix,
        secret_hash: hash,
        group_id,
        limit: key.limit,
        models: json_list(&clean_names("model", &key.models)?),
        expires_at: key.expires_at,
        revoked: key.revoked,
        version,
        now,
    })
    .await?;
    Ok(Action::Create)
}
