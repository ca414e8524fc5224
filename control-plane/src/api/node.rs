//! The plane API: what data planes call with the node token.
use std::{pin::Pin, sync::Arc};

use futures::Stream;
use router_proto::pb::{self, node_service_server::NodeService};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::{convert, feed::PolicyFeed, usage as usage_api};
use crate::{
    db::Db,
    payments::{CheckoutRequest, Event, Payments, nanos_per_minor},
    store::{
        accounts, codes, keys, leases, ledger, now_micros,
        orders::{self, Outcome},
        policy::{self, PolicyChanges},
        quarantine, rates, sessions,
        usage::{self, UsageFilter},
    },
};

/// Keys or accounts per snapshot page: a million keys do not fit one gRPC message.
const SNAPSHOT_PAGE_ITEMS: usize = 5_000;

type Answer<T> = Result<Response<T>, Status>;
type EventStream = Pin<Box<dyn Stream<Item = Result<pb::PolicyEvent, Status>> + Send>>;
type AckStream = Pin<Box<dyn Stream<Item = Result<pb::UsageAck, Status>> + Send>>;

/// The `NodeService` implementation.
#[derive(Clone)]
pub struct NodeApi {
    db: Db,
    feed: PolicyFeed,
    currency: String,
    shutdown: watch::Receiver<bool>,
    session_lifetime: i64,
    payments: Option<std::sync::Arc<Payments>>,
    rate_window_micros: i64,
    last_changes: Arc<LastChanges>,
}

impl NodeApi {
    /// A plane API over `db`; streams end when `shutdown` turns true.
    pub fn new(db: Db, feed: PolicyFeed, currency: String, shutdown: watch::Receiver<bool>) -> NodeApi {
        NodeApi {
            db,
            feed,
            currency,
            shutdown,
            session_lifetime: sessions::DEFAULT_LIFETIME,
            payments: None,
            rate_window_micros: rates::DEFAULT_WINDOW_MICROS,
            last_changes: Arc::default(),
        }
    }

    /// Console sessions last `micros` (default: 7 days).
    pub fn with_session_lifetime(self, micros: i64) -> NodeApi {
        NodeApi { session_lifetime: micros, ..self }
    }

    /// Top-up through `payments` (none: top-up is UNIMPLEMENTED).
    pub fn with_payments(self, payments: Option<std::sync::Arc<Payments>>) -> NodeApi {
        NodeApi { payments, ..self }
    }

    fn payments(&self) -> Result<&Payments, Status> {
        self.payments.as_deref().ok_or_else(|| {
            Status::unimplemented(
                "no payment provider is configured: ask the operator to top up, or redeem a code",
            )
        })
    }

    fn topup_options(&self) -> pb::TopUpOptions {
        match &self.payments {
            Some(p) => pb::TopUpOptions {
                enabled: true,
                amounts_nanos: p.limits.amounts.clone(),
                min_nanos: p.limits.min,
                max_nanos: p.limits.max,
            },
            None => pb::TopUpOptions::default(),
        }
    }

    /// The same, with a rate window of `micros` (tests use short ones).
    #[must_use]
    pub fn with_rate_window(mut self, micros: i64) -> NodeApi {
        self.rate_window_micros = micros.max(rates::SLOTS_PER_WINDOW);
        self
    }
}

/// Splits a policy into wire events: snapshot pages for a whole policy, one delta otherwise.
fn events(changes: PolicyChanges, currency: &str) -> Vec<pb::PolicyEvent> {
    let version = u64::try_from(changes.version).unwrap_or(0);
    let settings = Some(pb::Settings { currency: currency.to_owned() });
    let channels = changes.channels.into_iter().map(|c| convert::channel_to_pb(c, true)).collect();
    let index = convert::model_group_index(&changes.model_groups);
    let models = changes
        .models
        .into_iter()
        .map(|m| {
            let group = index.get(&m.name).cloned();
            convert::model_to_pb(m, group)
        })
        .collect();
    let model_groups = changes.model_groups.into_iter().map(convert::model_group_to_pb).collect();
    let model_aliases = changes.model_aliases.into_iter().map(convert::alias_to_pb).collect();
    let groups = changes.groups.into_iter().map(convert::group_to_pb).collect();
    let accounts: Vec<pb::PolicyAccount> =
        changes.accounts.into_iter().map(convert::policy_account_to_pb).collect();
    let keys: Vec<pb::PolicyKey> = changes.keys.into_iter().map(convert::policy_key_to_pb).collect();
    if !changes.full {
        let removed = changes
            .removed
            .iter()
            .map(|(kind, id)| pb::Removal { kind: convert::entity_kind(kind).into(), id: *id })
            .collect();
        let delta = pb::PolicyDelta {
            version,
            settings,
            channels,
            models,
            model_groups,
            groups,
            accounts,
            keys,
            removed,
            model_aliases,
        };
        return vec![pb::PolicyEvent { event: Some(pb::policy_event::Event::Delta(delta)) }];
    }
    let mut pages = vec![pb::SnapshotPage {
        version,
        first: true,
        settings,
        channels,
        models,
        model_groups,
        groups,
        model_aliases,
        ..pb::SnapshotPage::default()
    }];
    // Pages are taken from the front, each allocated to its own size (`split_off` from the
    // back left every page holding the capacity of all that followed it: quadratic memory).
    let (mut accounts, mut keys) = (accounts.into_iter(), keys.into_iter());
    loop {
        let page_accounts: Vec<_> = accounts.by_ref().take(SNAPSHOT_PAGE_ITEMS).collect();
        let page_keys: Vec<_> = keys.by_ref().take(SNAPSHOT_PAGE_ITEMS).collect();
        if page_accounts.is_empty() && page_keys.is_empty() {
            break;
        }
        match pages.last_mut().filter(|p| p.accounts.is_empty() && p.keys.is_empty()) {
            Some(page) => {
                page.accounts = page_accounts;
                page.keys = page_keys;
            }
            None => pages.push(pb::SnapshotPage {
                version,
                accounts: page_accounts,
                keys: page_keys,
                ..pb::SnapshotPage::default()
            }),
        }
    }
    if let Some(last) = pages.last_mut() {
        last.last = true;
    }
    pages
        .into_iter()
        .map(|page| pb::PolicyEvent { event: Some(pb::policy_event::Event::Snapshot(page)) })
        .collect()
}

/// The last changes read for the policy watchers. A change wakes every data plane's stream at
/// once, all standing at the same version: one read then serves them all, where each used to
/// make its own (ten data planes, ten identical reads of eight queries each, queued on the
/// pool behind one another on every change).
#[derive(Default)]
struct LastChanges(tokio::sync::Mutex<Option<ChangesRead>>);

struct ChangesRead {
    since: i64,
    version: i64,
    events: Arc<[pb::PolicyEvent]>,
}

impl LastChanges {
    /// The events after version `since`, up to `seen` at least, and the version they bring the
    /// reader to: the last read when it is of the same changes and new enough, else a new one.
    async fn after(
        &self,
        db: &Db,
        currency: &str,
        since: i64,
        seen: i64,
    ) -> crate::error::StoreResult<(i64, Arc<[pb::PolicyEvent]>)> {
        let mut last = self.0.lock().await;
        if let Some(read) = last.as_ref().filter(|read| read.since == since && read.version >= seen) {
            return Ok((read.version, Arc::clone(&read.events)));
        }
        let changes = policy::changes(db, Some(since)).await?;
        let version = changes.version;
        let events: Arc<[pb::PolicyEvent]> = events(changes, currency).into();
        *last = Some(ChangesRead { since, version, events: Arc::clone(&events) });
        Ok((version, events))
    }
}

async fn send_all(
    sender: &mpsc::Sender<Result<pb::PolicyEvent, Status>>,
    changes: PolicyChanges,
    currency: &str,
) -> Result<(), ()> {
    for event in events(changes, currency) {
        sender.send(Ok(event)).await.map_err(drop)?;
    }
    Ok(())
}

/// Records each batch of a usage stream in turn and acknowledges it once committed. Reports
/// refused as invalid are quarantined and the rest recorded, so a batch is acknowledged unless
/// the database fails; then (and on shutdown) the stream ends with an error status, never
/// with OK and a batch left unacknowledged.
async fn ingest_batches(
    db: Db,
    mut batches: Streaming<pb::UsageBatch>,
    acks: mpsc::Sender<Result<pb::UsageAck, Status>>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let batch = tokio::select! {
            batch = batches.message() => Some(batch),
            _ = shutdown.wait_for(|stop| *stop) => None,
            () = acks.closed() => return,
        };
        let batch = match batch {
            None => {
                let _ = acks.send(Err(Status::unavailable("the control plane is shutting down"))).await;
                return;
            }
            Some(Ok(Some(batch))) => batch,
            Some(Ok(None)) => return,
            Some(Err(status)) => {
                tracing::debug!(%status, "usage stream broke");
                return;
            }
        };
        let answer = ingest_batch(&db, batch).await;
        if let Err(status) = &answer {
            tracing::warn!(%status, "usage batch not recorded");
        }
        let failed = answer.is_err();
        if acks.send(answer).await.is_err() || failed {
            return;
        }
    }
}

/// Records one batch, quarantining what it refuses; the acknowledgement.
async fn ingest_batch(db: &Db, batch: pb::UsageBatch) -> Result<pb::UsageAck, Status> {
    let reports: Vec<usage::Report> = batch.reports.into_iter().map(convert::report_from_pb).collect();
    let now = now_micros();
    let done = usage::ingest(db, &batch.node_id, &reports, now).await?;
    let refused: Vec<quarantine::Refused<'_>> = done
        .refused
        .iter()
        .map(|(index, reason)| {
            let report = &reports[*index];
            quarantine::Refused {
                request_id: &report.request_id,
                key_id: report.key_id,
                reason,
                raw: prost::Message::encode_to_vec(&convert::report_to_pb(report)),
            }
        })
        .collect();
    for entry in &refused {
        tracing::warn!(node = %batch.node_id, request_id = %entry.request_id, key_id = entry.key_id, reason = %entry.reason, "usage report refused; quarantined");
    }
    // After the records: if this fails the batch is sent again, its good reports are then
    // duplicates and its bad ones are refused (and quarantined) again.
    quarantine::put(db, &batch.node_id, &refused, now).await?;
    tracing::debug!(node = %batch.node_id, batch = batch.batch_id, recorded = done.recorded, duplicates = done.duplicates, quarantined = refused.len(), "usage batch");
    Ok(pb::UsageAck {
        batch_id: batch.batch_id,
        recorded: done.recorded,
        duplicates: done.duplicates,
        quarantined: u32::try_from(refused.len()).unwrap_or(u32::MAX),
    })
}

#[tonic::async_trait]
impl NodeService for NodeApi {
    type WatchPolicyStream = EventStream;
    type ReportUsageStream = AckStream;

    async fn watch_policy(&self, request: Request<pb::WatchPolicyRequest>) -> Answer<EventStream> {
        let request = request.into_inner();
        let since = i64::try_from(request.since_version).ok().filter(|v| *v > 0);
        let first = policy::changes(&self.db, since).await?;
        tracing::info!(node = %request.node_id, since = ?since, version = first.version, full = first.full, "policy watch opened");
        let (sender, receiver) = mpsc::channel(4);
        let (db, currency, last_changes) =
            (self.db.clone(), self.currency.clone(), Arc::clone(&self.last_changes));
        let mut versions = self.feed.subscribe();
        let mut shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            let mut sent = first.version;
            if send_all(&sender, first, &currency).await.is_err() {
                return;
            }
            loop {
                tokio::select! {
                    changed = versions.changed() => if changed.is_err() { return },
                    _ = shutdown.wait_for(|stop| *stop) => return,
                    () = sender.closed() => return,
                }
                let seen = *versions.borrow_and_update();
                if seen == sent {
                    continue;
                }
                match last_changes.after(&db, &currency, sent, seen).await {
                    Ok((version, events)) => {
                        sent = version;
                        for event in events.iter() {
                            if sender.send(Ok(event.clone())).await.is_err() {
                                return;
                            }
                        }
                    }
                    Err(error) => {
                        let _ = sender.send(Err(error.into())).await;
                        return;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }

    async fn acquire_lease(&self, request: Request<pb::AcquireLeaseRequest>) -> Answer<pb::Lease> {
        let request = request.into_inner();
        let grant = leases::acquire(&self.db, convert::lease_request_from_pb(&request), now_micros()).await?;
        tracing::debug!(node = %request.node_id, key = request.key_id, granted = grant.granted, held = grant.held, limited_by = ?grant.limited_by, "lease");
        Ok(Response::new(convert::grant_to_pb(grant)))
    }

    async fn acquire_rate(&self, request: Request<pb::AcquireRateRequest>) -> Answer<pb::RateGrant> {
        let r = request.into_inner();
        let ask = rates::RateRequest {
            node_id: &r.node_id,
            key_id: r.key_id,
            want_requests: r.want_requests,
            want_tokens: r.want_tokens,
            min_requests: r.min_requests,
            min_tokens: r.min_tokens,
            want_concurrent: r.want_concurrent,
            used: r.used_slot.map(|slot| (slot, r.used_requests, r.used_tokens)),
        };
        let grant = rates::acquire(&self.db, ask, now_micros(), self.rate_window_micros).await?;
        tracing::debug!(node = %r.node_id, key = r.key_id, requests = grant.granted_requests, tokens = grant.granted_tokens, concurrent = grant.held_concurrent, limited_by = ?grant.limited_by, "rate grant");
        Ok(Response::new(convert::rate_grant_to_pb(&grant)))
    }

    async fn release_lease(&self, request: Request<pb::ReleaseLeaseRequest>) -> Answer<pb::Empty> {
        leases::release(&self.db, &request.into_inner().lease_id).await?;
        Ok(Response::new(pb::Empty {}))
    }

    async fn report_usage(&self, request: Request<Streaming<pb::UsageBatch>>) -> Answer<AckStream> {
        let batches = request.into_inner();
        let (sender, receiver) = mpsc::channel(16);
        tokio::spawn(ingest_batches(self.db.clone(), batches, sender, self.shutdown.clone()));
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }

    async fn get_key_status(&self, request: Request<pb::KeyStatusRequest>) -> Answer<pb::KeyStatus> {
        let key = keys::get(&self.db, request.into_inner().key_id).await?;
        let account = accounts::get_by_id(&self.db, key.account_id).await?;
        Ok(Response::new(pb::KeyStatus {
            key: Some(convert::key_to_pb(key)),
            account: Some(convert::account_to_pb(account)),
            currency: self.currency.clone(),
        }))
    }

    async fn list_key_usage(
        &self,
        request: Request<pb::ListKeyUsageRequest>,
    ) -> Answer<pb::ListUsageResponse> {
        let r = request.into_inner();
        let filter =
            UsageFilter { key_id: Some(r.key_id), limit: r.limit.map(i64::from), ..UsageFilter::default() };
        let page = usage::list(&self.db, filter).await?;
        Ok(Response::new(pb::ListUsageResponse {
            records: page.records.into_iter().map(convert::usage_to_pb).collect(),
            next_before_request_id: None,
        }))
    }

    async fn list_account_usage(
        &self,
        request: Request<pb::ListAccountUsageRequest>,
    ) -> Answer<pb::ListUsageResponse> {
        usage_api::list(&self.db, request.into_inner().try_into()?).await.map(Response::new)
    }

    async fn summarize_account_usage(
        &self,
        request: Request<pb::SummarizeAccountUsageRequest>,
    ) -> Answer<pb::UsageSummary> {
        usage_api::summarize(&self.db, request.into_inner().try_into()?).await.map(Response::new)
    }

    async fn login(&self, request: Request<pb::LoginRequest>) -> Answer<pb::Session> {
        let r = request.into_inner();
        let outcome = sessions::login(
            &self.db,
            &r.email,
            &r.password,
            &r.client_address,
            now_micros(),
            self.session_lifetime,
        )
        .await;
        // Never the password; the email only as the operator's record of who tried.
        match &outcome {
            Ok(session) => {
                tracing::info!(account = %session.account.name, address = %r.client_address, "console sign-in")
            }
            Err(error) => tracing::info!(address = %r.client_address, %error, "console sign-in refused"),
        }
        let session = outcome?;
        Ok(Response::new(pb::Session {
            token: session.token,
            csrf_token: session.csrf_token,
            expires_at_unix_micros: session.expires_at,
            account: Some(convert::account_to_pb(session.account)),
        }))
    }

    async fn logout(&self, request: Request<pb::SessionRequest>) -> Answer<pb::Empty> {
        sessions::logout(&self.db, &request.into_inner().token).await?;
        Ok(Response::new(pb::Empty {}))
    }

    async fn session_account(&self, request: Request<pb::SessionRequest>) -> Answer<pb::SessionInfo> {
        let info = sessions::session(&self.db, &request.into_inner().token, now_micros()).await?;
        Ok(Response::new(pb::SessionInfo {
            account: Some(convert::account_to_pb(info.account)),
            csrf_token: info.csrf_token,
            expires_at_unix_micros: info.expires_at,
            currency: self.currency.clone(),
            topup: Some(self.topup_options()),
        }))
    }

    async fn list_account_keys(&self, request: Request<pb::AccountRequest>) -> Answer<pb::ListKeysResponse> {
        let account_id = usage_api::required_account(request.into_inner().account_id)?;
        let account = accounts::get_by_id(&self.db, account_id).await?;
        let keys = keys::list(&self.db, Some(&account.name)).await?;
        Ok(Response::new(pb::ListKeysResponse { keys: keys.into_iter().map(convert::key_to_pb).collect() }))
    }

    async fn create_account_key(
        &self,
        request: Request<pb::CreateAccountKeyRequest>,
    ) -> Answer<pb::CreatedKey> {
        let r = request.into_inner();
        let account = accounts::get_by_id(&self.db, usage_api::required_account(r.account_id)?).await?;
        if let (Some(own), Some(asked)) = (account.daily_limit, r.daily_limit_nanos)
            && asked > own
        {
            return Err(Status::invalid_argument(
                "a key's daily limit cannot be higher than its account's daily limit",
            ));
        }
        // The account's own group: a key holder cannot pick another price list.
        let spec = keys::KeySpec {
            account: account.name,
            name: r.name,
            group: None,
            limit: r.limit_nanos,
            daily_limit: r.daily_limit_nanos,
            models: r.models,
            expires_at: r.expires_at_unix_micros,
            ..keys::KeySpec::default()
        };
        let (key, secret) = keys::create(&self.db, spec).await?;
        self.feed.poke();
        Ok(Response::new(pb::CreatedKey { key: Some(convert::key_to_pb(key)), secret }))
    }

    async fn update_account_key(&self, request: Request<pb::UpdateAccountKeyRequest>) -> Answer<pb::Key> {
        let r = request.into_inner();
        let account_id = usage_api::required_account(r.account_id)?;
        let key = keys::get(&self.db, r.key_id).await.ok().filter(|k| k.account_id == account_id);
        if key.is_none() {
            return Err(Status::not_found(format!("key {} not found", r.key_id)));
        }
        let account = accounts::get_by_id(&self.db, account_id).await?;
        if let (Some(own), Some(asked)) = (account.daily_limit, r.daily_limit_nanos)
            && asked > own
        {
            return Err(Status::invalid_argument(
                "a key's daily limit cannot be higher than its account's daily limit",
            ));
        }
        let change = |value: Option<i64>, clear: bool| if clear { Some(None) } else { value.map(Some) };
        let update = keys::KeyUpdate {
            limit: change(r.limit_nanos, r.clear_limit),
            daily_limit: change(r.daily_limit_nanos, r.clear_daily_limit),
            ..keys::KeyUpdate::default()
        };
        let key = keys::update(&self.db, r.key_id, update).await?;
        self.feed.poke();
        Ok(Response::new(convert::key_to_pb(key)))
    }

    async fn revoke_account_key(&self, request: Request<pb::AccountKeyRequest>) -> Answer<pb::Key> {
        let r = request.into_inner();
        let account_id = usage_api::required_account(r.account_id)?;
        let key = keys::get(&self.db, r.key_id).await.ok().filter(|k| k.account_id == account_id);
        if key.is_none() {
            return Err(Status::not_found(format!("key {} not found", r.key_id)));
        }
        let key = keys::revoke(&self.db, r.key_id).await?;
        self.feed.poke();
        Ok(Response::new(convert::key_to_pb(key)))
    }

    async fn list_account_ledger(
        &self,
        request: Request<pb::ListAccountLedgerRequest>,
    ) -> Answer<pb::ListLedgerResponse> {
        let r = request.into_inner();
        let account = accounts::get_by_id(&self.db, usage_api::required_account(r.account_id)?).await?;
        let limit = r.limit.map_or(50, i64::from).clamp(1, 1000);
        let entries = ledger::list(&self.db, Some(&account.name), limit).await?;
        Ok(Response::new(pb::ListLedgerResponse {
            entries: entries.into_iter().map(convert::entry_to_pb).collect(),
        }))
    }

    async fn redeem_for_account(
        &self,
        request: Request<pb::AccountRedeemRequest>,
    ) -> Answer<pb::BalanceChange> {
        let r = request.into_inner();
        let account = accounts::get_by_id(&self.db, usage_api::required_account(r.account_id)?).await?;
        let (amount, posted) = codes::redeem(&self.db, account.id, r.code.trim()).await?;
        Ok(Response::new(pb::BalanceChange {
            account: account.name,
            amount_nanos: amount,
            balance_nanos: posted.balance,
            ledger_id: posted.ledger_id,
        }))
    }

    async fn create_top_up(&self, request: Request<pb::CreateTopUpRequest>) -> Answer<pb::TopUpCheckout> {
        let payments = self.payments()?;
        let r = request.into_inner();
        let account = accounts::get_by_id(&self.db, usage_api::required_account(r.account_id)?).await?;
        payments.limits.allows(r.amount_nanos).map_err(Status::invalid_argument)?;
        let per_minor = nanos_per_minor(&self.currency);
        if r.amount_nanos % per_minor != 0 {
            return Err(Status::invalid_argument(format!(
                "more decimals than {} has for card payments",
                self.currency
            )));
        }
        let base = r.return_url_base.trim_end_matches('/');
        if !base.starts_with("http://") && !base.starts_with("https://") {
            return Err(Status::invalid_argument("return_url_base must be an http(s) URL"));
        }
        let order =
            orders::create(&self.db, account.id, payments.provider.name(), r.amount_nanos, &self.currency)
                .await?;
        let checkout = CheckoutRequest {
            order_id: order.id,
            account: account.name.clone(),
            amount_minor: r.amount_nanos / per_minor,
            currency: self.currency.to_ascii_lowercase(),
            success_url: format!("{base}/console/wallet?paid={}", order.id),
            cancel_url: format!("{base}/console/wallet"),
        };
        let created = payments.provider.create_checkout(&checkout).await.map_err(|error| {
            tracing::warn!(order = order.id, %error, "cannot create a checkout session");
            Status::unavailable(error)
        })?;
        orders::attach_session(&self.db, order.id, &created.session_id, &created.url).await?;
        tracing::info!(order = order.id, account = %account.name, session = %created.session_id, "top-up checkout created");
        Ok(Response::new(pb::TopUpCheckout { order_id: order.id, checkout_url: created.url }))
    }

    async fn payment_webhook(
        &self,
        request: Request<pb::PaymentWebhookRequest>,
    ) -> Answer<pb::PaymentWebhookResult> {
        let payments = self.payments()?;
        let r = request.into_inner();
        if r.provider != payments.provider.name() {
            return Err(Status::invalid_argument(format!(
                "no payment provider {:?} is configured",
                r.provider
            )));
        }
        let now = now_micros() / 1_000_000;
        let event = payments.provider.verify_webhook(&r.payload, &r.signature, now).map_err(|error| {
            tracing::warn!(%error, "payment webhook refused");
            Status::invalid_argument(error.to_string())
        })?;
        // A paid webhook is only a hint: for a pending order of ours, Stripe's own answer for
        // the session decides (one it cannot be asked about now is a 503, which Stripe retries).
        let event = match event {
            Event::Completed { session_id, paid: true, .. } => match orders::pending(&self.db, &session_id)
                .await?
            {
                None => return Ok(Response::new(pb::PaymentWebhookResult { outcome: "ignored".into() })),
                Some(false) => {
                    return Ok(Response::new(pb::PaymentWebhookResult { outcome: "unchanged".into() }));
                }
                Some(true) => payments.provider.session(&session_id).await.map_err(|error| {
                    tracing::warn!(session = %session_id, %error, "cannot confirm a paid checkout session");
                    Status::unavailable(error)
                })?,
            },
            event => event,
        };
        let outcome = match event {
            Event::Completed { session_id, paid: true, amount_minor, currency } => {
                let paid = amount_minor
                    .checked_mul(nanos_per_minor(&currency))
                    .ok_or_else(|| Status::invalid_argument("amount_total is out of range"))?;
                match orders::pay(&self.db, &session_id, paid, &currency).await {
                    Ok(Outcome::Credited) => {
                        tracing::info!(session = %session_id, "top-up paid and credited");
                        "credited"
                    }
                    Ok(_) => "unchanged",
                    // A session of another integration on the same Stripe account.
                    Err(crate::error::StoreError::NotFound(_)) => "ignored",
                    Err(error) => {
                        tracing::warn!(session = %session_id, %error, "paid checkout session not credited");
                        return Err(error.into());
                    }
                }
            }
            Event::Completed { .. } => "unpaid",
            Event::Expired { session_id } => match orders::expire(&self.db, &session_id).await? {
                Outcome::Expired => "expired",
                _ => "unchanged",
            },
            Event::Ignored(_) => "ignored",
        };
        Ok(Response::new(pb::PaymentWebhookResult { outcome: outcome.to_owned() }))
    }

    async fn redeem(&self, request: Request<pb::RedeemRequest>) -> Answer<pb::BalanceChange> {
        let r = request.into_inner();
        let key = keys::get(&self.db, r.key_id).await?;
        if key.revoked {
            return Err(Status::permission_denied("the key is revoked"));
        }
        let (amount, posted) = codes::redeem(&self.db, key.account_id, &r.code).await?;
        Ok(Response::new(pb::BalanceChange {
            account: key.account,
            amount_nanos: amount,
            balance_nanos: posted.balance,
            ledger_id: posted.ledger_id,
        }))
    }
}
