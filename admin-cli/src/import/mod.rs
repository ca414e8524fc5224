//! `routerctl import new-api|one-api`: reads another gateway's database (SQLite, PostgreSQL
//! or MySQL) and maps what it holds onto Code Router's setup, keys, balances and codes, to be
//! written by the control plane in one transaction.
//!
//! Reading ([`read`]) is separate from mapping ([`map`]), which is pure and tested on its own.
pub mod decimal;
pub mod map;
pub mod read;

use std::collections::BTreeMap;

/// Which gateway the database belongs to: their schemas differ in a few columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Flavor {
    /// QuantumNous/new-api.
    #[value(name = "new-api")]
    NewApi,
    /// songquanpeng/one-api.
    #[value(name = "one-api")]
    OneApi,
}

/// A row of their `channels` table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TheirChannel {
    /// Row id.
    pub id: i64,
    /// Their channel type number (1 OpenAI, 3 Azure, 14 Anthropic, 24 Gemini, …).
    pub kind: i64,
    /// One key, or several one per line.
    pub key: String,
    /// 1 enabled, 2 disabled by hand, 3 disabled automatically.
    pub status: i64,
    /// Free name.
    pub name: String,
    /// Weight within a priority.
    pub weight: i64,
    /// Base URL without `/v1` (empty: the type's default).
    pub base_url: String,
    /// Comma-separated models.
    pub models: String,
    /// Comma-separated user groups allowed to use the channel.
    pub group: String,
    /// JSON object: requested model -> upstream model.
    pub model_mapping: String,
    /// Higher first.
    pub priority: i64,
    /// Azure: the API version.
    pub other: String,
}

/// A row of their `users` table (deleted users are not read).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TheirUser {
    /// Row id.
    pub id: i64,
    /// Unique login name.
    pub username: String,
    /// 1 enabled, 2 disabled.
    pub status: i64,
    /// Balance in quota units.
    pub quota: i64,
    /// User group.
    pub group: String,
}

/// A row of their `tokens` table (deleted tokens are not read).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TheirToken {
    /// Row id.
    pub id: i64,
    /// Owner.
    pub user_id: i64,
    /// The secret without its `sk-`.
    pub key: String,
    /// 1 enabled, 2 disabled, 3 expired, 4 exhausted.
    pub status: i64,
    /// Free name.
    pub name: String,
    /// Unix seconds; -1: never.
    pub expired_time: i64,
    /// What the token may still spend, in quota units.
    pub remain_quota: i64,
    /// No spending cap.
    pub unlimited_quota: bool,
    /// Allowed models (comma-separated); empty: all.
    pub models: String,
    /// The token's own group (new-api); empty: the user's.
    pub group: String,
}

/// A row of their `redemptions` table (deleted ones are not read).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TheirCode {
    /// Row id.
    pub id: i64,
    /// The code's text.
    pub key: String,
    /// 1 unused, 2 disabled, 3 used.
    pub status: i64,
    /// What it credits, in quota units.
    pub quota: i64,
    /// Unix seconds; 0 or -1: never (new-api).
    pub expired_time: i64,
}

/// Everything read from their database.
#[derive(Debug, Clone, Default)]
pub struct TheirData {
    /// Channels.
    pub channels: Vec<TheirChannel>,
    /// Users.
    pub users: Vec<TheirUser>,
    /// Tokens.
    pub tokens: Vec<TheirToken>,
    /// Redemption codes.
    pub codes: Vec<TheirCode>,
    /// The `options` table (ModelRatio, CompletionRatio, ModelPrice, GroupRatio, QuotaPerUnit …).
    pub options: BTreeMap<String, String>,
}
