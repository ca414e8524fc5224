//! `routerctl key …`: API keys that apps use, with their own limits and allow-lists.
use clap::{ArgGroup, Args, Subcommand};
use router_proto::{Money, pb};
use serde::Serialize;

use super::limits::{PeriodArgs, PeriodUpdateArgs, RateArgs, RateUpdateArgs, RateView};
use crate::{
    args::{self, Clearable, Names, split_clearable},
    client::Admin,
    error::Error,
    output::{self, Output, Record, or_unset},
};

/// Key subcommands.
#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Create a key; its secret is printed once and never again.
    Create(CreateArgs),
    /// List keys (without secrets).
    List {
        /// Only this account's keys.
        #[arg(long, value_name = "NAME", value_parser = args::name)]
        account: Option<String>,
    },
    /// Change a key; what is not given stays as it is, `none` removes a setting.
    Update(UpdateArgs),
    /// Revoke a key for good.
    Revoke {
        /// The key's id.
        id: i64,
    },
}

/// Flags of `key create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The account the key spends from.
    #[arg(long, value_name = "NAME", value_parser = args::name)]
    pub account: String,
    /// A label for the key.
    #[arg(long, value_name = "N")]
    pub name: Option<String>,
    /// The key's own token group (default: the account's).
    #[arg(long, value_name = "G", value_parser = args::name)]
    pub group: Option<String>,
    /// The most the key may spend in all.
    #[arg(long, value_name = "X", value_parser = args::money)]
    pub limit: Option<Money>,
    /// The most the key may spend in one UTC day.
    #[arg(long, value_name = "X", value_parser = args::money)]
    pub daily_limit: Option<Money>,
    /// Only these models, comma-separated (default: every model the group reaches).
    #[arg(long, value_name = "m1,m2", value_parser = args::names)]
    pub models: Option<Names>,
    /// When the key stops working, RFC 3339 (e.g. 2026-12-31T23:59:59Z).
    #[arg(long, value_name = "RFC3339", value_parser = args::timestamp)]
    pub expires_at: Option<i64>,
    /// The key's own rate limits (default: its group's).
    #[command(flatten)]
    pub rates: RateArgs,
    /// Weekly and monthly spend limits.
    #[command(flatten)]
    pub periods: PeriodArgs,
}

impl CreateArgs {
    fn into_request(self) -> pb::CreateKeyRequest {
        let (rpm, tpm, max_concurrent) = self.rates.wire();
        let (weekly, monthly) = self.periods.wire();
        pb::CreateKeyRequest {
            rpm,
            tpm,
            max_concurrent,
            weekly_limit_nanos: weekly,
            monthly_limit_nanos: monthly,
            account: self.account,
            name: self.name,
            group: self.group,
            limit_nanos: self.limit.map(Money::nanos),
            daily_limit_nanos: self.daily_limit.map(Money::nanos),
            models: self.models.map(|names| names.0).unwrap_or_default(),
            expires_at_unix_micros: self.expires_at,
        }
    }
}

/// Flags of `key update`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("changes").required(true).multiple(true)))]
pub struct UpdateArgs {
    /// The key's id.
    pub id: i64,
    /// A label for the key.
    #[arg(long, value_name = "N", group = "changes")]
    pub name: Option<String>,
    /// The key's own token group; `none`: the account's group applies.
    #[arg(long, value_name = "G", group = "changes", value_parser = args::clearable_name)]
    pub group: Option<Clearable<String>>,
    /// The most the key may spend in all; `none` removes the limit.
    #[arg(long, value_name = "X", group = "changes", value_parser = args::clearable_money)]
    pub limit: Option<Clearable<Money>>,
    /// The most the key may spend in one UTC day; `none` removes the limit.
    #[arg(long, value_name = "X", group = "changes", value_parser = args::clearable_money)]
    pub daily_limit: Option<Clearable<Money>>,
    /// Only these models, comma-separated; `none`: every model the group reaches.
    #[arg(long, value_name = "m1,m2", group = "changes", value_parser = args::clearable_names)]
    pub models: Option<Clearable<Names>>,
    /// When the key stops working, RFC 3339; `none`: never.
    #[arg(long, value_name = "RFC3339", group = "changes", value_parser = args::clearable_timestamp)]
    pub expires_at: Option<Clearable<i64>>,
    /// The key's own rate limits (0: its group's apply).
    #[command(flatten)]
    pub rates: RateUpdateArgs,
    /// Weekly and monthly spend limits.
    #[command(flatten)]
    pub periods: PeriodUpdateArgs,
}

impl UpdateArgs {
    fn into_request(self) -> pb::UpdateKeyRequest {
        let (group, clear_group) = split_clearable(self.group);
        let (limit, clear_limit) = split_clearable(self.limit);
        let (daily_limit, clear_daily_limit) = split_clearable(self.daily_limit);
        let (expires_at, clear_expires_at) = split_clearable(self.expires_at);
        let set_models = self.models.is_some();
        // `none` sets an empty allow-list, which the proto reads as "every model".
        let models = self.models.and_then(Clearable::set).map(|names| names.0);
        let (rpm, tpm, max_concurrent) = self.rates.wire();
        let (weekly, monthly) = self.periods.wire();
        pb::UpdateKeyRequest {
            rpm,
            tpm,
            max_concurrent,
            weekly_limit_nanos: weekly,
            monthly_limit_nanos: monthly,
            id: self.id,
            name: self.name,
            group,
            clear_group,
            limit_nanos: limit.map(Money::nanos),
            clear_limit,
            daily_limit_nanos: daily_limit.map(Money::nanos),
            clear_daily_limit,
            set_models,
            models: models.unwrap_or_default(),
            expires_at_unix_micros: expires_at,
            clear_expires_at,
        }
    }
}

/// Runs a key subcommand.
pub async fn run(command: KeyCommand, admin: &mut Admin, out: &mut Output) -> Result<(), Error> {
    let key = match command {
        KeyCommand::Create(create) => {
            let created = admin.create_key(create.into_request()).await?.into_inner();
            let key = created.key.as_ref().ok_or_else(|| {
                Error::Server("the control plane created a key but did not return it".into())
            })?;
            let view = CreatedKeyView { key: KeyView::new(key), secret: created.secret };
            if out.is_json() {
                return out.json(&view);
            }
            out.record(&view.key)?;
            return out.text(&format!(
                "\nkey: {}\nThis secret is shown only once; the control plane keeps only a hash. \
                 Store it now.",
                view.secret
            ));
        }
        KeyCommand::List { account } => {
            let keys = admin.list_keys(pb::ListKeysRequest { account }).await?.into_inner().keys;
            let views: Vec<KeyView> = keys.iter().map(KeyView::new).collect();
            return out.records(&views);
        }
        KeyCommand::Update(update) => admin.update_key(update.into_request()).await?,
        KeyCommand::Revoke { id } => admin.revoke_key(pb::KeyIdRequest { id }).await?,
    };
    out.record(&KeyView::new(key.get_ref()))
}

/// A key for display, without its secret.
#[derive(Debug, Serialize)]
pub struct KeyView {
    id: i64,
    name: String,
    prefix: String,
    account: String,
    group: Option<String>,
    effective_group: String,
    limit: Option<String>,
    spent: String,
    daily_limit: Option<String>,
    spent_today: String,
    weekly_limit: Option<String>,
    spent_this_week: String,
    monthly_limit: Option<String>,
    spent_this_month: String,
    #[serde(flatten)]
    rates: RateView,
    models: Vec<String>,
    expires_at: Option<String>,
    revoked: bool,
    created_at: String,
}

impl KeyView {
    /// The display form of a proto key.
    pub fn new(key: &pb::Key) -> KeyView {
        KeyView {
            id: key.id,
            name: key.name.clone(),
            prefix: key.prefix.clone(),
            account: key.account.clone(),
            group: key.group.clone(),
            effective_group: key.effective_group.clone(),
            limit: output::opt_money(key.limit_nanos),
            spent: output::money(key.spent_nanos),
            daily_limit: output::opt_money(key.daily_limit_nanos),
            spent_today: output::money(key.spent_today_nanos),
            weekly_limit: output::opt_money(key.weekly_limit_nanos.filter(|l| *l > 0)),
            spent_this_week: output::money(key.spent_this_week_nanos),
            monthly_limit: output::opt_money(key.monthly_limit_nanos.filter(|l| *l > 0)),
            spent_this_month: output::money(key.spent_this_month_nanos),
            rates: RateView::new(key.rpm, key.tpm, key.max_concurrent),
            models: key.models.clone(),
            expires_at: output::opt_time(key.expires_at_unix_micros),
            revoked: key.revoked,
            created_at: output::time(key.created_at_unix_micros),
        }
    }
}

impl Record for KeyView {
    const COLUMNS: &'static [&'static str] = &[
        "id",
        "name",
        "prefix",
        "account",
        "group",
        "limit",
        "spent",
        "daily_limit",
        "spent_today",
        "weekly_limit",
        "monthly_limit",
        "rpm",
        "tpm",
        "max_concurrent",
        "expires_at",
        "revoked",
    ];

    fn fields(&self) -> Vec<(&'static str, String)> {
        // In text, the group column shows the group in force; an inherited one is marked.
        let group = match &self.group {
            Some(group) => group.clone(),
            None => format!("{} (account)", self.effective_group),
        };
        let mut fields = vec![
            ("id", self.id.to_string()),
            ("name", self.name.clone()),
            ("prefix", self.prefix.clone()),
            ("account", self.account.clone()),
            ("group", group),
            ("limit", or_unset(self.limit.as_ref())),
            ("spent", self.spent.clone()),
            ("daily_limit", or_unset(self.daily_limit.as_ref())),
            ("spent_today", self.spent_today.clone()),
            ("weekly_limit", or_unset(self.weekly_limit.as_ref())),
            ("spent_this_week", self.spent_this_week.clone()),
            ("monthly_limit", or_unset(self.monthly_limit.as_ref())),
            ("spent_this_month", self.spent_this_month.clone()),
        ];
        fields.extend(self.rates.fields());
        fields.extend([
            ("models", output::list(&self.models, "(all the group reaches)")),
            ("expires_at", or_unset(self.expires_at.as_ref())),
            ("revoked", self.revoked.to_string()),
            ("created_at", self.created_at.clone()),
        ]);
        fields
    }
}

/// A newly created key: the key plus its secret, which is never shown again.
#[derive(Debug, Serialize)]
pub struct CreatedKeyView {
    #[serde(flatten)]
    key: KeyView,
    #[serde(rename = "key")]
    secret: String,
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn parse(line: &[&str]) -> Result<KeyCommand, clap::Error> {
        let cli = Cli::try_parse_from(std::iter::once("routerctl").chain(line.iter().copied()))?;
        match cli.command {
            Command::Key(command) => Ok(command),
            other => panic!("not a key command: {other:?}"),
        }
    }

    fn update_request(line: &[&str]) -> pb::UpdateKeyRequest {
        match parse(line) {
            Ok(KeyCommand::Update(update)) => update.into_request(),
            other => panic!("not a key update: {other:?}"),
        }
    }

    #[test]
    fn update_none_clears_each_setting() {
        let request = update_request(&[
            "key",
            "update",
            "12",
            "--group",
            "none",
            "--limit",
            "none",
            "--daily-limit",
            "none",
            "--models",
            "none",
            "--expires-at",
            "none",
        ]);
        assert!(request.clear_group && request.group.is_none());
        assert!(request.clear_limit && request.limit_nanos.is_none());
        assert!(request.clear_daily_limit && request.daily_limit_nanos.is_none());
        assert!(request.set_models && request.models.is_empty());
        assert!(request.clear_expires_at && request.expires_at_unix_micros.is_none());
        assert_eq!(request.id, 12);
    }

    #[test]
    fn update_values_set_each_setting() {
        let request = update_request(&[
            "key",
            "update",
            "12",
            "--limit",
            "5",
            "--models",
            "a, b",
            "--expires-at",
            "1970-01-01T00:00:01Z",
        ]);
        assert_eq!(request.limit_nanos, Some(5_000_000_000));
        assert!(!request.clear_limit && !request.clear_group && request.group.is_none());
        assert!(request.set_models);
        assert_eq!(request.models, ["a", "b"]);
        assert_eq!(request.expires_at_unix_micros, Some(1_000_000));
        assert!(parse(&["key", "update", "12"]).is_err());
        assert!(parse(&["key", "update", "x", "--limit", "1"]).is_err());
        assert!(parse(&["key", "update", "1", "--expires-at", "2026-12-31"]).is_err());
    }

    #[test]
    fn created_keys_render_with_their_secret() {
        let key = pb::Key {
            id: 5,
            name: "ci".into(),
            prefix: "sk-abcd".into(),
            account: "bob".into(),
            group: None,
            limit_nanos: Some(1_000_000_000),
            spent_nanos: 0,
            daily_limit_nanos: None,
            spent_today_nanos: 0,
            models: vec![],
            expires_at_unix_micros: None,
            revoked: false,
            created_at_unix_micros: 0,
            effective_group: "default".into(),
            rpm: Some(60),
            weekly_limit_nanos: Some(2_000_000_000),
            ..pb::Key::default()
        };
        let view = CreatedKeyView { key: KeyView::new(&key), secret: "sk-abcdef".into() };
        assert_eq!(
            serde_json::to_value(&view).expect("views serialize"),
            serde_json::json!({
                "id": 5, "name": "ci", "prefix": "sk-abcd", "account": "bob", "group": null,
                "effective_group": "default", "limit": "1", "spent": "0", "daily_limit": null,
                "spent_today": "0", "weekly_limit": "2", "spent_this_week": "0",
                "monthly_limit": null, "spent_this_month": "0", "rpm": 60, "tpm": null,
                "max_concurrent": null, "models": [], "expires_at": null, "revoked": false,
                "created_at": "1970-01-01T00:00:00Z", "key": "sk-abcdef",
            })
        );
    }
}
