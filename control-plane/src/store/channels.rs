//! Channels: the upstream endpoints requests are forwarded to.
use std::collections::BTreeMap;

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use router_proto::protocols;

use super::{check_name, clean_names, json_list, now_micros, parse_json_list};
use crate::{
    db::{Db, TxConn, schema::channels},
    error::{StoreError, StoreResult, exists_as},
    with_conn, write_tx,
};

/// The protocols a channel can speak.
pub const CHANNEL_TYPES: [&str; 4] = ["openai", "anthropic", "azure", "gemini"];

/// A channel as stored.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = channels, treat_none_as_null = true)]
#[diesel(check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
pub struct Channel {
    /// Row id.
    #[diesel(skip_insertion)]
    pub id: i64,
    /// Unique name.
    pub name: String,
    /// One of [`CHANNEL_TYPES`].
    pub channel_type: String,
    /// What the provider's own SDK takes as base URL.
    pub base_url: String,
    /// The upstream credential (never shown whole to admins; sealed at rest when a secret key
    /// is configured).
    pub api_key: ChannelKey,
    /// JSON list of model (or model-group) names served.
    pub models: String,
    /// Higher is tried first.
    pub priority: i32,
    /// Weighted random choice within a priority.
    pub weight: i32,
    /// JSON object: client model name -> upstream model name.
    pub model_map: String,
    /// Azure's `api-version`.
    pub api_version: Option<String>,
    /// Disabled channels get no traffic.
    pub enabled: bool,
    /// Policy version of the last change.
    pub version: i64,
    /// Unix micros.
    pub created_at: i64,
    /// JSON list of the protocols it speaks natively, canonical order (`[]`: its type's
    /// defaults).
    pub protocols: String,
    /// Where an `openai` channel serves Anthropic's Messages API (`{URL}/v1/messages`).
    pub messages_base_url: Option<String>,
    /// Why it is disabled ([`DISABLED_BY_ADMIN`] or [`DISABLED_BY_HEALTH`]); `None` while
    /// enabled.
    pub disabled_reason: Option<String>,
}

/// A channel's upstream key: the key itself in memory, sealed with the operator's secret key
/// (see [`crate::secrets`]) in the database whenever one is configured. Written through
/// diesel it is sealed; read, it is opened (a key stored in clear is read as is).
#[derive(
    Clone, PartialEq, Eq, Default, diesel::expression::AsExpression, diesel::deserialize::FromSqlRow,
)]
#[diesel(sql_type = diesel::sql_types::Text)]
pub struct ChannelKey(pub String);

impl ChannelKey {
    /// The key.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for ChannelKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ChannelKey({})", mask_secret(&self.0))
    }
}

impl From<String> for ChannelKey {
    fn from(key: String) -> ChannelKey {
        ChannelKey(key)
    }
}

impl From<&str> for ChannelKey {
    fn from(key: &str) -> ChannelKey {
        ChannelKey(key.to_owned())
    }
}

impl diesel::serialize::ToSql<diesel::sql_types::Text, diesel::sqlite::Sqlite> for ChannelKey {
    fn to_sql<'b>(
        &'b self,
        out: &mut diesel::serialize::Output<'b, '_, diesel::sqlite::Sqlite>,
    ) -> diesel::serialize::Result {
        out.set_value(crate::secrets::seal(&self.0));
        Ok(diesel::serialize::IsNull::No)
    }
}

impl diesel::serialize::ToSql<diesel::sql_types::Text, diesel::pg::Pg> for ChannelKey {
    fn to_sql<'b>(
        &'b self,
        out: &mut diesel::serialize::Output<'b, '_, diesel::pg::Pg>,
    ) -> diesel::serialize::Result {
        use std::io::Write;
        out.write_all(crate::secrets::seal(&self.0).as_bytes())?;
        Ok(diesel::serialize::IsNull::No)
    }
}

impl<B: diesel::backend::Backend> diesel::deserialize::FromSql<diesel::sql_types::Text, B> for ChannelKey
where
    String: diesel::deserialize::FromSql<diesel::sql_types::Text, B>,
{
    fn from_sql(value: B::RawValue<'_>) -> diesel::deserialize::Result<ChannelKey> {
        let stored = String::from_sql(value)?;
        Ok(ChannelKey(crate::secrets::open(&stored)?))
    }
}

/// `disabled_reason` of a channel an admin disabled: health checks never enable it.
pub const DISABLED_BY_ADMIN: &str = "admin";
/// `disabled_reason` of a channel its health checks disabled: a passing check enables it.
pub const DISABLED_BY_HEALTH: &str = "health";

impl Channel {
    /// The protocols as declared (empty: the type's defaults).
    pub fn declared_protocols(&self) -> Vec<String> {
        parse_json_list(&self.protocols)
    }

    /// The protocols it speaks: declared, or its type's defaults.
    pub fn protocol_list(&self) -> Vec<String> {
        protocols::effective(&self.channel_type, &self.declared_protocols())
    }

    /// The model names served.
    pub fn model_list(&self) -> Vec<String> {
        parse_json_list(&self.models)
    }

    /// The model map.
    pub fn model_map(&self) -> BTreeMap<String, String> {
        serde_json::from_str(&self.model_map).unwrap_or_default()
    }

    /// The upstream key with all but its ends hidden.
    pub fn masked_api_key(&self) -> String {
        mask_secret(self.api_key.expose())
    }
}

/// Hides all but a few characters of a secret at each end.
pub fn mask_secret(secret: &str) -> String {
    let chars: Vec<char> = secret.chars().collect();
    if chars.len() <= 12 {
        return "*".repeat(chars.len().min(8));
    }
    let head: String = chars[..4].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}…{tail}")
}

/// Everything a new channel needs.
#[derive(Debug, Clone, Default)]
pub struct ChannelSpec {
    /// Unique name.
    pub name: String,
    /// One of [`CHANNEL_TYPES`].
    pub channel_type: String,
    /// Base URL (`http://` or `https://`).
    pub base_url: String,
    /// Upstream credential.
    pub api_key: String,
    /// Model names served.
    pub models: Vec<String>,
    /// Priority (default 0).
    pub priority: Option<i32>,
    /// Weight (default 1).
    pub weight: Option<i32>,
    /// Model map.
    pub model_map: BTreeMap<String, String>,
    /// Azure `api-version`.
    pub api_version: Option<String>,
    /// Protocols spoken natively (empty: the type's defaults).
    pub protocols: Vec<String>,
    /// Where an `openai` channel serves Anthropic's Messages API.
    pub messages_base_url: Option<String>,
}

/// Changes to a channel; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct ChannelUpdate {
    /// Rename.
    pub name: Option<String>,
    /// New type.
    pub channel_type: Option<String>,
    /// New base URL.
    pub base_url: Option<String>,
    /// New upstream credential.
    pub api_key: Option<String>,
    /// Replacement model list.
    pub models: Option<Vec<String>>,
    /// New priority.
    pub priority: Option<i32>,
    /// New weight.
    pub weight: Option<i32>,
    /// Replacement model map.
    pub model_map: Option<BTreeMap<String, String>>,
    /// `Some(None)` clears the api version.
    pub api_version: Option<Option<String>>,
    /// Replacement protocol list (empty: the type's defaults).
    pub protocols: Option<Vec<String>>,
    /// `Some(None)` clears the Messages base URL.
    pub messages_base_url: Option<Option<String>>,
}

fn validate(channel: &Channel) -> StoreResult<()> {
    check_name("channel", &channel.name)?;
    if !CHANNEL_TYPES.contains(&channel.channel_type.as_str()) {
        return Err(StoreError::invalid(format!(
            "unknown channel type {:?} (expected one of {})",
            channel.channel_type,
            CHANNEL_TYPES.join(", ")
        )));
    }
    check_url("base URL", &channel.base_url)?;
    // Also checks a list kept across a change of type.
    protocols::normalize(&channel.channel_type, &channel.declared_protocols())
        .map_err(StoreError::invalid)?;
    if let Some(url) = &channel.messages_base_url {
        check_url("messages base URL", url)?;
        if channel.channel_type != "openai" || !channel.protocol_list().iter().any(|p| p == "messages") {
            return Err(StoreError::invalid(
                "a messages base URL is for an openai channel whose protocols include messages",
            ));
        }
    }
    if channel.api_key.expose().trim().is_empty() {
        return Err(StoreError::invalid("channel api key must not be empty"));
    }
    if channel.model_list().is_empty() {
        return Err(StoreError::invalid("a channel must serve at least one model"));
    }
    if channel.weight < 0 {
        return Err(StoreError::invalid("channel weight must not be negative"));
    }
    for (from, to) in channel.model_map() {
        check_name("model map", &from)?;
        check_name("model map", &to)?;
    }
    Ok(())
}

fn check_url(what: &str, url: &str) -> StoreResult<()> {
    let rest = url.strip_prefix("http://").or_else(|| url.strip_prefix("https://"));
    if rest.is_none_or(|host| host.is_empty() || host.starts_with('/')) {
        return Err(StoreError::invalid(format!("{what} {url:?} must be an http:// or https:// URL")));
    }
    Ok(())
}

/// The stored form of a declared protocol list: checked for `channel_type`, canonical order,
/// `[]` for the type's defaults.
fn encode_protocols(channel_type: &str, declared: &[String]) -> StoreResult<String> {
    Ok(json_list(&protocols::normalize(channel_type, declared).map_err(StoreError::invalid)?))
}

fn clean_url(url: Option<String>) -> Option<String> {
    url.map(|u| u.trim_end_matches('/').to_owned()).filter(|u| !u.is_empty())
}

fn encode_map(map: &BTreeMap<String, String>) -> String {
    serde_json::to_string(map).unwrap_or_else(|_| "{}".to_owned())
}

/// The row a new channel gets (enabled, not yet stamped with a version), checked.
pub fn new_row(spec: ChannelSpec, now: i64) -> StoreResult<Channel> {
    let protocols = encode_protocols(&spec.channel_type, &spec.protocols)?;
    let channel = Channel {
        id: 0,
        name: spec.name,
        channel_type: spec.channel_type,
        base_url: spec.base_url.trim_end_matches('/').to_owned(),
        api_key: ChannelKey(spec.api_key),
        models: json_list(&clean_names("model", &spec.models)?),
        priority: spec.priority.unwrap_or(0),
        weight: spec.weight.unwrap_or(1),
        model_map: encode_map(&spec.model_map),
        api_version: spec.api_version.filter(|v| !v.is_empty()),
        enabled: true,
        version: 0,
        created_at: now,
        protocols,
        messages_base_url: clean_url(spec.messages_base_url),
        disabled_reason: None,
    };
    validate(&channel)?;
    Ok(channel)
}

/// Adds a channel.
pub async fn add(db: &Db, spec: ChannelSpec) -> StoreResult<Channel> {
    let mut channel = new_row(spec, now_micros())?;
    write_tx!(db, |conn| {
        channel.version = conn.bump_policy_version().await?;
        let name = channel.name.clone();
        diesel::insert_into(channels::table)
            .values(&channel)
            .returning(Channel::as_returning())
            .get_result(conn)
            .await
            .map_err(exists_as(|| format!("channel {name:?}")))
    })
}

async fn change(
    db: &Db,
    name: &str,
    apply: impl FnOnce(&mut Channel) -> StoreResult<()> + Send,
) -> StoreResult<Channel> {
    write_tx!(db, |conn| {
        let mut channel: Channel = channels::table
            .filter(channels::name.eq(name))
            .select(Channel::as_select())
            .first(conn)
            .await
            .optional()?
            .ok_or_else(|| StoreError::NotFound(format!("channel {name:?}")))?;
        apply(&mut channel)?;
        validate(&channel)?;
        channel.version = conn.bump_policy_version().await?;
        let new_name = channel.name.clone();
        diesel::update(channels::table.find(channel.id))
            .set(&channel)
            .returning(Channel::as_returning())
            .get_result(conn)
            .await
            .map_err(exists_as(|| format!("channel {new_name:?}")))
    })
}

/// Changes a channel; a replaced api key is not left behind in the database files.
pub async fn update(db: &Db, name: &str, update: ChannelUpdate) -> StoreResult<Channel> {
    let new_key = update.api_key.is_some();
    let changed = change(db, name, move |channel| {
        if let Some(v) = update.name {
            channel.name = v;
        }
        if let Some(v) = update.channel_type {
            channel.channel_type = v;
        }
        if let Some(v) = update.base_url {
            channel.base_url = v.trim_end_matches('/').to_owned();
        }
        if let Some(v) = update.api_key {
            channel.api_key = ChannelKey(v);
        }
        if let Some(v) = update.models {
            channel.models = json_list(&clean_names("model", &v)?);
        }
        if let Some(v) = update.priority {
            channel.priority = v;
        }
        if let Some(v) = update.weight {
            channel.weight = v;
        }
        if let Some(v) = update.model_map {
            channel.model_map = encode_map(&v);
        }
        if let Some(v) = update.api_version {
            channel.api_version = v.filter(|v| !v.is_empty());
        }
        // A kept list is stored again for the (possibly new) type: equal to its defaults, it
        // becomes `[]`.
        let protocols = update.protocols.unwrap_or_else(|| channel.declared_protocols());
        channel.protocols = encode_protocols(&channel.channel_type, &protocols)?;
        if let Some(v) = update.messages_base_url {
            channel.messages_base_url = clean_url(v);
        }
        Ok(())
    })
    .await?;
    if new_key {
        db.scrub("channels").await;
    }
    Ok(changed)
}

/// Enables or disables a channel (an admin's decision, which health checks respect).
pub async fn set_enabled(db: &Db, name: &str, enabled: bool) -> StoreResult<Channel> {
    change(db, name, move |channel| {
        channel.enabled = enabled;
        channel.disabled_reason = (!enabled).then(|| DISABLED_BY_ADMIN.to_owned());
        Ok(())
    })
    .await
}

/// What a health check concluded about channel `id`: an enabled channel that is not `healthy`
/// is disabled with reason `health`; a channel disabled for its health that is `healthy` again
/// is enabled. Anything else (above all a channel an admin disabled) is left alone. Returns the
/// channel when it changed.
pub async fn set_health(db: &Db, id: i64, healthy: bool) -> StoreResult<Option<Channel>> {
    write_tx!(db, |conn| {
        let Some(mut channel) =
            channels::table.find(id).select(Channel::as_select()).first(conn).await.optional()?
        else {
            return Ok(None);
        };
        let by_health = channel.disabled_reason.as_deref() == Some(DISABLED_BY_HEALTH);
        match (channel.enabled, healthy) {
            (true, false) => {
                channel.enabled = false;
                channel.disabled_reason = Some(DISABLED_BY_HEALTH.to_owned());
            }
            (false, true) if by_health => {
                channel.enabled = true;
                channel.disabled_reason = None;
            }
            _ => return Ok(None),
        }
        channel.version = conn.bump_policy_version().await?;
        let changed = diesel::update(channels::table.find(channel.id))
            .set(&channel)
            .returning(Channel::as_returning())
            .get_result(conn)
            .await?;
        Ok(Some(changed))
    })
}

/// One channel by name.
pub async fn get(db: &Db, name: &str) -> StoreResult<Channel> {
    with_conn!(db, |conn| {
        channels::table
            .filter(channels::name.eq(name))
            .select(Channel::as_select())
            .first(conn)
            .await
            .optional()?
            .ok_or_else(|| StoreError::NotFound(format!("channel {name:?}")))
    })
}

/// All channels, by name.
pub async fn list(db: &Db) -> StoreResult<Vec<Channel>> {
    with_conn!(db, |conn| Ok(channels::table
        .order(channels::name)
        .select(Channel::as_select())
        .load(conn)
        .await?))
}

/// Brings every stored channel key under the process's secret key (at start): one in clear,
/// or encrypted with an old key, is encrypted anew, and the old form is scrubbed from the
/// database files. Refuses (naming the key) a key it cannot decrypt: without a secret key, or
/// encrypted with one it was not given. Returns how many keys it encrypted.
pub async fn seal_stored(db: &Db) -> StoreResult<usize> {
    let sealer = crate::secrets::sealer();
    let sealed = write_tx!(db, |conn| {
        let stored: Vec<(i64, String)> =
            channels::table.select((channels::id, channels::api_key)).load(conn).await?;
        let mut sealed = 0;
        for (id, stored) in stored {
            let plain = crate::secrets::open(&stored).map_err(|e| StoreError::invalid(e.to_string()))?;
            let Some(sealer) = sealer.filter(|sealer| sealer.needs_sealing(&stored)) else { continue };
            diesel::update(channels::table.find(id))
                .set(channels::api_key.eq(sealer.seal(&plain)))
                .execute(conn)
                .await?;
            sealed += 1;
        }
        Ok(sealed)
    })?;
    if sealed > 0 {
        db.scrub("channels").await;
    }
    Ok(sealed)
}

/// Deletes a channel; its api key is not left behind in the database files.
pub async fn delete(db: &Db, name: &str) -> StoreResult<()> {
    write_tx!(db, |conn| {
        let id: i64 = channels::table
            .filter(channels::name.eq(name))
            .select(channels::id)
            .first(conn)
            .await
            .optional()?
            .ok_or_else(|| StoreError::NotFound(format!("channel {name:?}")))?;
        let version = conn.bump_policy_version().await?;
        diesel::delete(channels::table.find(id)).execute(conn).await?;
        conn.record_removal(version, "channel", id).await?;
        Ok(())
    })?;
    db.scrub("channels").await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_secrets() {
        assert_eq!(mask_secret("sk-abcdefghijklmnopqrstuvwxyz"), "sk-a…wxyz");
        assert_eq!(mask_secret("short"), "*****");
        assert!(!mask_secret("sk-0123456789abcdef").contains("456789ab"));
    }
}
