//! `/console`: the account console's pages, rendered on the server (maud templates, checked at
//! compile time) from the same control-plane calls as `/api/account/*`. Plain HTML forms do
//! every change (a hidden CSRF field stands in for the `x-csrf-token` header), so the pages
//! work without script; a few lines of it copy a new key and confirm a revocation.
use std::{collections::HashMap, net::SocketAddr};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use maud::{DOCTYPE, Markup, PreEscaped, html};
use router_proto::{Money, pb};
use time::{Duration, OffsetDateTime};

use super::{
    STYLE, Session,
    api::{self, NewKey, query_pairs, time_text},
    charts,
    i18n::{LANG_COOKIE, Lang, Text},
    read_body, rpc_error, same_token, session, session_cookie,
};
use crate::{
    app::App,
    body::{ResponseBody, full},
    endpoints::catalog,
    proxy::error::{ApiError, ErrorCode},
};

/// The form field that carries the session's CSRF token.
const CSRF_FIELD: &str = "csrf";

/// The console's pages, for the navigation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Page {
    Dashboard,
    Keys,
    Usage,
    Pricing,
    Wallet,
}

impl Page {
    const ALL: [Page; 5] = [Page::Dashboard, Page::Keys, Page::Usage, Page::Pricing, Page::Wallet];

    fn path(self) -> &'static str {
        match self {
            Page::Dashboard => "/console",
            Page::Keys => "/console/keys",
            Page::Usage => "/console/usage",
            Page::Pricing => "/console/pricing",
            Page::Wallet => "/console/wallet",
        }
    }

    fn title(self, text: &Text) -> &'static str {
        match self {
            Page::Dashboard => text.dashboard,
            Page::Keys => text.keys,
            Page::Usage => text.usage,
            Page::Pricing => text.pricing,
            Page::Wallet => text.wallet,
        }
    }

    fn of_path(path: &str) -> Option<Page> {
        Page::ALL.into_iter().find(|p| p.path() == path.trim_end_matches('/'))
    }
}

/// What one request renders with.
struct Ctx<'a> {
    app: &'a App,
    lang: Lang,
    text: &'static Text,
    /// Set when the request switched the language (the cookie to remember it).
    remember_lang: bool,
}

fn money(nanos: i64) -> String {
    Money::from_nanos(nanos).to_string()
}

fn limit_text(nanos: Option<i64>, text: &Text) -> String {
    nanos.filter(|n| *n > 0).map_or_else(|| text.no_limit.to_owned(), money)
}

/// "60 requests/min · 100000 tokens/min · 4 in flight", or `None` without rate limits.
fn rates_text(
    rpm: Option<i64>,
    tpm: Option<i64>,
    max_concurrent: Option<i64>,
    text: &Text,
) -> Option<String> {
    let parts: Vec<String> =
        [(rpm, text.per_minute), (tpm, text.tokens_per_minute), (max_concurrent, text.in_flight)]
            .into_iter()
            .filter_map(|(limit, unit)| limit.filter(|l| *l > 0).map(|l| format!("{l} {unit}")))
            .collect();
    (!parts.is_empty()).then(|| parts.join(" · "))
}

/// `YYYY-MM-DD HH:MM:SS` (UTC) of unix micros.
fn short_time(micros: i64) -> String {
    let full = time_text(micros);
    let mut short: String = full.chars().take(19).collect();
    short = short.replacen('T', " ", 1);
    short
}

fn utc_day_start(now: OffsetDateTime) -> OffsetDateTime {
    now.replace_time(time::Time::MIDNIGHT)
}

fn micros(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1000).unwrap_or(i64::MAX)
}

/// An HTML answer that no cache keeps.
fn page_response(status: StatusCode, markup: Markup) -> Response<ResponseBody> {
    let mut response = Response::new(full(Bytes::from(markup.into_string())));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
    headers.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    headers.insert("referrer-policy", HeaderValue::from_static("same-origin"));
    response
}

/// `303 See Other` to a console path.
fn redirect(location: &str) -> Response<ResponseBody> {
    let mut response = Response::new(full(Bytes::new()));
    *response.status_mut() = StatusCode::SEE_OTHER;
    let value = HeaderValue::from_str(location).unwrap_or(HeaderValue::from_static("/console"));
    response.headers_mut().insert(header::LOCATION, value);
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Only a console path may be where a sign-in sends the browser next.
fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(next) if next.starts_with("/console") && !next.contains("//") && !next.contains('\\') => next,
        _ => "/console",
    }
}

fn form_value<'f>(form: &'f [(String, String)], name: &str) -> Option<&'f str> {
    form.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// Serves `/console` and everything under it.
pub async fn handle(
    app: &App,
    request: Request<Incoming>,
    path: &str,
    peer: SocketAddr,
) -> Response<ResponseBody> {
    let query = query_pairs(request.uri().query());
    let asked = form_value(&query, "lang");
    let lang = Lang::of_request(request.headers(), asked);
    let ctx = Ctx { app, lang, text: lang.text(), remember_lang: asked.and_then(Lang::named).is_some() };
    let method = request.method().clone();
    let mut response = match (&method, path) {
        (&Method::GET | &Method::HEAD, _) if Page::of_path(path).is_some() => {
            let page = Page::of_path(path).unwrap_or(Page::Dashboard);
            get_page(&ctx, request.headers(), page, &query).await
        }
        (&Method::POST, "/console/login") => login(&ctx, request, peer).await,
        (&Method::POST, _) => post(&ctx, request, path).await,
        _ => {
            let text = ctx.text;
            page_response(
                StatusCode::NOT_FOUND,
                layout(&ctx, None, None, text.error, html! { p { "404 · " (path) } }),
            )
        }
    };
    if ctx.remember_lang {
        let cookie = format!("{LANG_COOKIE}={}; Path=/; Max-Age=31536000; SameSite=Lax", lang.code());
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    response
}

/// A page for a signed-in caller, or the sign-in form when the caller is not signed in.
async fn get_page(
    ctx: &Ctx<'_>,
    headers: &HeaderMap,
    page: Page,
    query: &[(String, String)],
) -> Response<ResponseBody> {
    let signed_in = match session(ctx.app, headers).await {
        Ok(session) => Some(session),
        Err(error) if error.status == StatusCode::UNAUTHORIZED || error.status == StatusCode::FORBIDDEN => {
            None
        }
        Err(error) => return error_page(ctx, None, &error),
    };
    let Some(session) = signed_in else {
        if page == Page::Pricing {
            return page_response(StatusCode::OK, pricing(ctx, None));
        }
        let had_cookie = super::cookie(headers, super::SESSION_COOKIE).is_some();
        let message = had_cookie.then_some(ctx.text.session_over);
        return page_response(StatusCode::OK, sign_in_form(ctx, page.path(), message, ""));
    };
    let rendered = match page {
        Page::Dashboard => dashboard(ctx, &session).await,
        Page::Keys => keys(ctx, &session, None, None).await,
        Page::Usage => usage(ctx, &session, query).await,
        Page::Pricing => Ok(pricing(ctx, Some(&session))),
        Page::Wallet => {
            let paid = form_value(query, "paid")
                .map(|order| Ok(format!("{} {order}. {}", ctx.text.order, ctx.text.payment_pending)));
            wallet(ctx, &session, paid).await
        }
    };
    match rendered {
        Ok(markup) => page_response(StatusCode::OK, markup),
        Err(error) => error_page(ctx, Some(&session), &error),
    }
}

fn error_page(ctx: &Ctx<'_>, session: Option<&Session>, error: &ApiError) -> Response<ResponseBody> {
    let text = ctx.text;
    let message =
        if error.status == StatusCode::SERVICE_UNAVAILABLE { text.unavailable } else { &error.message };
    page_response(
        error.status,
        layout(ctx, session, None, text.error, html! { div.error role="alert" { (message) } }),
    )
}

/// The page frame: navigation (when signed in), the language switch, sign-out.
fn layout(
    ctx: &Ctx<'_>,
    session: Option<&Session>,
    current: Option<Page>,
    title: &str,
    body: Markup,
) -> Markup {
    let text = ctx.text;
    let other = ctx.lang.other();
    let here = current.map_or("/console", Page::path);
    let account = session.and_then(|s| s.info.account.as_ref());
    html! {
        (DOCTYPE)
        html lang=(ctx.lang.code()) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · " (text.console) " · Code Router" }
                style { (PreEscaped(STYLE)) }
            }
            body {
                a.skip href="#main" { (text.main_content) }
                header.top {
                    a.brand href="/console" { "Code Router " (text.console) }
                    @if session.is_some() {
                        nav aria-label=(text.console) {
                            ul {
                                @for page in Page::ALL {
                                    li {
                                        a href=(page.path()) aria-current=[(current == Some(page)).then_some("page")] {
                                            (page.title(text))
                                        }
                                    }
                                }
                            }
                        }
                    }
                    div.side {
                        a data-test="lang-switch" href=(format!("{here}?lang={}", other.code()))
                            hreflang=(other.code()) lang=(other.code()) { (other.own_name()) }
                        @if let (Some(session), Some(account)) = (session, account) {
                            span.muted { (text.signed_in_as) " " strong { (account.name) } }
                            form.inline method="post" action="/console/logout" {
                                input type="hidden" name=(CSRF_FIELD) value=(session.info.csrf_token);
                                button.secondary type="submit" { (text.sign_out) }
                            }
                        }
                    }
                }
                main.page #main {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

fn sign_in_form(ctx: &Ctx<'_>, next: &str, message: Option<&str>, email: &str) -> Markup {
    let text = ctx.text;
    layout(
        ctx,
        None,
        None,
        text.sign_in,
        html! {
            p.note { (text.sign_in_intro) }
            @if let Some(message) = message {
                div.error role="alert" data-test="login-error" { (message) }
            }
            form.signin method="post" action="/console/login" {
                input type="hidden" name="next" value=(next);
                label for="login-email" { (text.email)
                    input #login-email type="email" name="email" value=(email) required autocomplete="username"
                        autofocus data-test="login-email";
                }
                label for="login-password" { (text.password)
                    input #login-password type="password" name="password" required
                        autocomplete="current-password" data-test="login-password";
                }
                button type="submit" data-test="login-submit" { (text.sign_in) }
            }
            p { a href="/console/pricing" { (text.pricing) } }
        },
    )
}

async fn form_body(app: &App, request: Request<Incoming>) -> Result<Vec<(String, String)>, ApiError> {
    let body = read_body(app, request).await?;
    let body = std::str::from_utf8(&body).map_err(|_| {
        ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::InvalidRequest, "the form is not UTF-8")
    })?;
    Ok(query_pairs(Some(body)))
}

async fn login(ctx: &Ctx<'_>, request: Request<Incoming>, peer: SocketAddr) -> Response<ResponseBody> {
    let headers = request.headers().clone();
    let form = match form_body(ctx.app, request).await {
        Ok(form) => form,
        Err(error) => return error_page(ctx, None, &error),
    };
    let email = form_value(&form, "email").unwrap_or_default().to_owned();
    let password = form_value(&form, "password").unwrap_or_default().to_owned();
    let next = safe_next(form_value(&form, "next")).to_owned();
    let mut client = ctx.app.node.clone();
    let login = pb::LoginRequest { email: email.clone(), password, client_address: peer.ip().to_string() };
    match client.login(login).await {
        Ok(session) => {
            let session = session.into_inner();
            let max_age = (session.expires_at_unix_micros - crate::app::unix_micros()).max(0) / 1_000_000;
            let mut response = redirect(&next);
            response
                .headers_mut()
                .insert(header::SET_COOKIE, session_cookie(&headers, &session.token, max_age));
            response
        }
        Err(status) => {
            let text = ctx.text;
            let (code, message) = match status.code() {
                tonic::Code::Unauthenticated | tonic::Code::InvalidArgument => {
                    (StatusCode::UNAUTHORIZED, text.wrong_credentials.to_owned())
                }
                tonic::Code::PermissionDenied => (StatusCode::FORBIDDEN, text.account_disabled.to_owned()),
                tonic::Code::ResourceExhausted => {
                    let error = rpc_error(&status);
                    let seconds = error.retry_after.unwrap_or(60);
                    let mut response = page_response(
                        StatusCode::TOO_MANY_REQUESTS,
                        sign_in_form(
                            ctx,
                            &next,
                            Some(&format!("{} {seconds} s.", text.too_many_attempts)),
                            &email,
                        ),
                    );
                    if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
                        response.headers_mut().insert(header::RETRY_AFTER, value);
                    }
                    return response;
                }
                _ => (StatusCode::SERVICE_UNAVAILABLE, text.unavailable.to_owned()),
            };
            page_response(code, sign_in_form(ctx, &next, Some(&message), &email))
        }
    }
}

/// The signed-in caller of a form post, which must carry the session's CSRF token.
async fn form_session(
    ctx: &Ctx<'_>,
    headers: &HeaderMap,
    form: &[(String, String)],
) -> Result<Session, ApiError> {
    let session = session(ctx.app, headers).await?;
    let sent = form_value(form, CSRF_FIELD).unwrap_or_default();
    if !same_token(sent, &session.info.csrf_token) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::CsrfFailed,
            "missing or wrong CSRF token",
        ));
    }
    Ok(session)
}

/// The form posts: sign-out, key create and revoke, redeem, top-up.
async fn post(ctx: &Ctx<'_>, request: Request<Incoming>, path: &str) -> Response<ResponseBody> {
    let headers = request.headers().clone();
    let form = match form_body(ctx.app, request).await {
        Ok(form) => form,
        Err(error) => return error_page(ctx, None, &error),
    };
    let session = match form_session(ctx, &headers, &form).await {
        Ok(session) => session,
        Err(error) if error.status == StatusCode::UNAUTHORIZED => {
            return page_response(
                StatusCode::UNAUTHORIZED,
                sign_in_form(ctx, "/console", Some(ctx.text.session_over), ""),
            );
        }
        Err(error) => return error_page(ctx, None, &error),
    };
    let text = ctx.text;
    let rendered = match path {
        "/console/logout" => {
            let mut client = ctx.app.node.clone();
            if let Err(status) = client.logout(pb::SessionRequest { token: session.token.clone() }).await {
                return error_page(ctx, Some(&session), &rpc_error(&status));
            }
            let mut response = redirect("/console");
            response.headers_mut().insert(header::SET_COOKIE, session_cookie(&headers, "", 0));
            return response;
        }
        "/console/keys" => {
            let models = form_value(&form, "models")
                .unwrap_or_default()
                .split(',')
                .map(str::trim)
                .filter(|m| !m.is_empty())
                .map(str::to_owned)
                .collect();
            let new = NewKey {
                name: form_value(&form, "name").map(str::to_owned),
                limit: form_value(&form, "limit").map(str::to_owned),
                daily_limit: form_value(&form, "daily_limit").map(str::to_owned),
                models,
                expires_at: None,
            };
            match api::create(ctx.app, &session, new).await {
                Ok(created) => {
                    keys(ctx, &session, Some(&created.secret), None).await.map(|m| (StatusCode::OK, m))
                }
                Err(error) => {
                    keys(ctx, &session, None, Some(&error.message)).await.map(|m| (error.status, m))
                }
            }
        }
        "/console/redeem" => {
            let code = form_value(&form, "code").unwrap_or_default().trim().to_owned();
            match api::redeem_code(ctx.app, &session, code).await {
                Ok(change) => {
                    let notice = format!("{} {}", text.redeemed, money(change.balance_nanos));
                    wallet(ctx, &session, Some(Ok(notice))).await.map(|m| (StatusCode::OK, m))
                }
                Err(error) => {
                    wallet(ctx, &session, Some(Err(error.message.clone()))).await.map(|m| (error.status, m))
                }
            }
        }
        "/console/topup" => {
            let amount = form_value(&form, "amount").unwrap_or_default();
            match api::start_topup(ctx.app, &session, &headers, amount).await {
                // To Stripe's checkout page; Stripe sends the browser back to the Wallet.
                Ok(checkout) => return redirect(&checkout.checkout_url),
                Err(error) if error.code == ErrorCode::PaymentsNotConfigured => {
                    wallet(ctx, &session, Some(Err(text.topup_not_configured.to_owned())))
                        .await
                        .map(|m| (error.status, m))
                }
                Err(error) => {
                    wallet(ctx, &session, Some(Err(error.message.clone()))).await.map(|m| (error.status, m))
                }
            }
        }
        _ if path.starts_with("/console/keys/") && path.ends_with("/limits") => {
            let id = &path["/console/keys/".len()..path.len() - "/limits".len()];
            // The form shows the current values: an emptied field removes that limit.
            let limits = api::KeyLimits {
                limit: Some(form_value(&form, "limit").map(str::to_owned)),
                daily_limit: Some(form_value(&form, "daily_limit").map(str::to_owned)),
            };
            match api::set_key_limits(ctx.app, &session, id, limits).await {
                Ok(_) => return redirect("/console/keys"),
                Err(error) => {
                    keys(ctx, &session, None, Some(&error.message)).await.map(|m| (error.status, m))
                }
            }
        }
        _ if path.starts_with("/console/keys/") && path.ends_with("/revoke") => {
            let id = &path["/console/keys/".len()..path.len() - "/revoke".len()];
            match api::revoke(ctx.app, &session, id).await {
                Ok(_) => return redirect("/console/keys"),
                Err(error) => {
                    keys(ctx, &session, None, Some(&error.message)).await.map(|m| (error.status, m))
                }
            }
        }
        _ => Err(ApiError::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, format!("no form at {path}"))),
    };
    match rendered {
        Ok((status, markup)) => page_response(status, markup),
        Err(error) => error_page(ctx, Some(&session), &error),
    }
}

fn account(session: &Session) -> pb::Account {
    session.info.account.clone().unwrap_or_default()
}

async fn dashboard(ctx: &Ctx<'_>, session: &Session) -> Result<Markup, ApiError> {
    let text = ctx.text;
    let account = account(session);
    let currency = session.info.currency.clone();
    let now = OffsetDateTime::now_utc();
    let today = utc_day_start(now);
    let first_day = today - Duration::days(29);
    let week_start = today - Duration::days(i64::from(today.weekday().number_days_from_monday()));
    let month_start = today.replace_day(1).unwrap_or(today);
    let since = first_day.min(week_start).min(month_start);
    let by_day = api::summarize(ctx.app, session, "day", Some(micros(since)), None, None).await?;
    let by_model = api::summarize(ctx.app, session, "model", Some(micros(first_day)), None, None).await?;
    let spent_since = |start: OffsetDateTime| -> i64 {
        by_day
            .buckets
            .iter()
            .filter(|b| b.start_unix_micros >= micros(start))
            .fold(0i64, |sum, b| sum.saturating_add(b.cost_nanos))
    };
    let per_day: HashMap<&str, i64> =
        by_day.buckets.iter().map(|b| (b.bucket.as_str(), b.cost_nanos)).collect();
    let days: Vec<(String, i64)> = (0..30)
        .map(|i| {
            let day = (first_day + Duration::days(i)).date().to_string();
            let cost = per_day.get(day.as_str()).copied().unwrap_or(0);
            (day, cost)
        })
        .collect();
    let mut models: Vec<(String, i64)> =
        by_model.buckets.iter().map(|b| (b.bucket.clone(), b.cost_nanos)).collect();
    models.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    models.truncate(12);
    let any_usage = by_model.buckets.iter().any(|b| b.requests > 0);
    Ok(layout(
        ctx,
        Some(session),
        Some(Page::Dashboard),
        text.dashboard,
        html! {
            div.cards {
                div.card {
                    div.label { (text.balance) }
                    div.value { span data-test="balance" { (money(account.balance_nanos)) } " " (currency) }
                }
                div.card {
                    div.label { (text.reserved) }
                    div.value data-test="reserved" { (money(account.reserved_nanos)) }
                    div.muted { (text.reserved_note) }
                }
                div.card {
                    div.label { (text.spent_today) }
                    div.value data-test="spent-today" { (money(account.spent_today_nanos)) }
                    div.muted { (text.limit) ": " (limit_text(account.daily_limit_nanos, text)) }
                }
                div.card {
                    div.label { (text.spent_this_week) }
                    div.value data-test="spent-week" { (money(spent_since(week_start))) }
                    div.muted data-test="weekly-limit" { (text.limit) ": " (limit_text(account.weekly_limit_nanos, text)) }
                }
                div.card {
                    div.label { (text.spent_this_month) }
                    div.value data-test="spent-month" { (money(spent_since(month_start))) }
                    div.muted data-test="monthly-limit" { (text.limit) ": " (limit_text(account.monthly_limit_nanos, text)) }
                }
                div.card {
                    div.label { (text.group) }
                    div.value { (account.group) }
                    @if let Some(rates) = rates_text(account.rpm, account.tpm, account.max_concurrent, text) {
                        div.muted data-test="account-rate-limits" { (text.rate_limits) ": " (rates) }
                    }
                }
            }
            div.charts {
                section {
                    h2 { (text.daily_spend) }
                    (charts::daily_spend(&days, &currency, text))
                }
                section {
                    h2 { (text.spend_by_model) }
                    @if any_usage {
                        (charts::by_model(&models, &currency, text))
                    } @else {
                        p.muted { (text.no_usage_yet) }
                    }
                }
            }
        },
    ))
}

async fn keys(
    ctx: &Ctx<'_>,
    session: &Session,
    secret: Option<&str>,
    error: Option<&str>,
) -> Result<Markup, ApiError> {
    let text = ctx.text;
    let keys = api::list_keys(ctx.app, session).await?;
    let csrf = &session.info.csrf_token;
    Ok(layout(
        ctx,
        Some(session),
        Some(Page::Keys),
        text.keys,
        html! {
            @if let Some(error) = error {
                div.error role="alert" { (error) }
            }
            @if let Some(secret) = secret {
                div.notice role="status" {
                    strong { (text.new_key_secret) }
                    div.secret {
                        code #key-secret data-test="key-secret" { (secret) }
                        button.secondary type="button" data-copy="key-secret" { (text.copy) }
                    }
                    p { (text.new_key_note) }
                }
            }
            h2 { (text.create_key) }
            p.note { (text.create_key_note) }
            form.stack method="post" action="/console/keys" {
                input type="hidden" name=(CSRF_FIELD) value=(csrf);
                label for="key-name" { (text.name)
                    input #key-name type="text" name="name" maxlength="200" data-test="key-name";
                }
                label for="key-limit" { (text.total_limit) " (" (text.optional) ")"
                    input #key-limit type="text" name="limit" inputmode="decimal" placeholder="10";
                }
                label for="key-daily" { (text.daily_limit) " (" (text.optional) ")"
                    input #key-daily type="text" name="daily_limit" inputmode="decimal" placeholder="1";
                }
                label for="key-models" { (text.model) " (" (text.optional) ")"
                    input #key-models type="text" name="models" placeholder="gpt-4o-mini,claude-sonnet-4";
                }
                button type="submit" data-test="key-create" { (text.create_key) }
            }
            h2 { (text.your_keys) }
            div.table-wrap {
                table {
                    thead {
                        tr {
                            th scope="col" { (text.prefix) }
                            th scope="col" { (text.name) }
                            th scope="col" { (text.group) }
                            th scope="col" { (text.limits) }
                            th scope="col" { (text.spent) }
                            th scope="col" { (text.status) }
                            th scope="col" { (text.expires) }
                            th scope="col" { span.skip { (text.revoke) } }
                        }
                    }
                    tbody {
                        @for key in &keys {
                            tr data-test="key-row" data-key-id=(key.id) {
                                td { code { (key.prefix) "…" } }
                                td { (key.name) }
                                td { (key.effective_group) }
                                td {
                                    (text.total_limit) ": " (limit_text(key.limit_nanos, text)) br;
                                    (text.daily_limit) ": " (limit_text(key.daily_limit_nanos, text))
                                    @if key.weekly_limit_nanos.is_some_and(|l| l > 0) {
                                        br; (text.weekly_limit) ": " (limit_text(key.weekly_limit_nanos, text))
                                    }
                                    @if key.monthly_limit_nanos.is_some_and(|l| l > 0) {
                                        br; (text.monthly_limit) ": " (limit_text(key.monthly_limit_nanos, text))
                                    }
                                    @if let Some(rates) = rates_text(key.rpm, key.tpm, key.max_concurrent, text) {
                                        br; span data-test="key-rate-limits" { (rates) }
                                    }
                                    @if !key.models.is_empty() { br; (key.models.join(", ")) }
                                    @if !key.revoked {
                                        details.key-limits {
                                            summary { (text.set_limits) }
                                            form method="post" action=(format!("/console/keys/{}/limits", key.id)) {
                                                input type="hidden" name=(CSRF_FIELD) value=(csrf);
                                                label { (text.total_limit) " "
                                                    input type="text" name="limit" inputmode="decimal" size="8"
                                                        data-test="key-limit-input"
                                                        value=(key.limit_nanos.map(money).unwrap_or_default()); }
                                                label { (text.daily_limit) " "
                                                    input type="text" name="daily_limit" inputmode="decimal" size="8"
                                                        data-test="key-daily-limit-input"
                                                        value=(key.daily_limit_nanos.map(money).unwrap_or_default()); }
                                                button type="submit" data-test="key-limits-save" { (text.set_limits) }
                                            }
                                        }
                                    }
                                }
                                td.num { (money(key.spent_nanos)) br; span.muted { (text.spent_today) ": " (money(key.spent_today_nanos)) } }
                                @if key.revoked {
                                    td.status-revoked data-test="key-status" { (text.revoked) }
                                } @else {
                                    td.status-active data-test="key-status" { (text.active) }
                                }
                                td { (key.expires_at_unix_micros.map(short_time).unwrap_or_else(|| "—".to_owned())) }
                                td {
                                    @if !key.revoked {
                                        form.inline method="post" action=(format!("/console/keys/{}/revoke", key.id))
                                            data-confirm=(text.revoke_confirm) {
                                            input type="hidden" name=(CSRF_FIELD) value=(csrf);
                                            button.danger type="submit" data-test="key-revoke"
                                                aria-label=(format!("{} {}", text.revoke, key.name)) { (text.revoke) }
                                        }
                                    }
                                }
                            }
                        }
                        @if keys.is_empty() {
                            tr { td colspan="8" { (text.no_keys) } }
                        }
                    }
                }
            }
            script { (PreEscaped(KEYS_SCRIPT)) }
        },
    ))
}

/// Copy buttons and revoke confirmations (the page works without them).
const KEYS_SCRIPT: &str = r#"
document.querySelectorAll("[data-copy]").forEach(function (b) {
  b.addEventListener("click", function () {
    var t = document.getElementById(b.getAttribute("data-copy")).textContent;
    if (navigator.clipboard) { navigator.clipboard.writeText(t); }
  });
});
document.querySelectorAll("form[data-confirm]").forEach(function (f) {
  f.addEventListener("submit", function (e) {
    if (!window.confirm(f.getAttribute("data-confirm"))) { e.preventDefault(); }
  });
});
"#;

/// `YYYY-MM-DD` as the following day's first instant, so that "until" a date includes it.
fn day_after(value: &str) -> Option<String> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    let day = time::Date::parse(value, &format).ok()?;
    Some(format!("{}T00:00:00Z", day.next_day()?))
}

fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(char::from(byte)),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

async fn usage(ctx: &Ctx<'_>, session: &Session, query: &[(String, String)]) -> Result<Markup, ApiError> {
    let text = ctx.text;
    let keep = ["key", "model", "since", "until", "status"];
    let filters: Vec<(String, String)> =
        query.iter().filter(|(k, v)| keep.contains(&k.as_str()) && !v.is_empty()).cloned().collect();
    let mut listing: Vec<(String, String)> = filters
        .iter()
        .map(|(k, v)| match (k.as_str(), day_after(v)) {
            ("until", Some(next)) => (k.clone(), next),
            _ => (k.clone(), v.clone()),
        })
        .collect();
    if let Some(before) = form_value(query, "before").filter(|b| !b.is_empty()) {
        listing.push(("before".to_owned(), before.to_owned()));
    }
    listing.push(("limit".to_owned(), "50".to_owned()));
    let request = api::usage_request(session, &listing)?;
    let page = api::usage_page(ctx.app, request).await?;
    let keys = api::list_keys(ctx.app, session).await?;
    let key_names: HashMap<i64, String> = keys
        .iter()
        .map(|k| (k.id, if k.name.is_empty() { format!("{}…", k.prefix) } else { k.name.clone() }))
        .collect();
    let filter_query: String = filters.iter().map(|(k, v)| format!("&{}={}", encode(k), encode(v))).collect();
    let current = |name: &str| form_value(&filters, name).unwrap_or_default().to_owned();
    let selected_key = current("key");
    Ok(layout(
        ctx,
        Some(session),
        Some(Page::Usage),
        text.usage,
        html! {
            form.stack method="get" action="/console/usage" role="search" {
                label for="f-key" { (text.key)
                    select #f-key name="key" {
                        option value="" { (text.all_keys) }
                        @for key in &keys {
                            option value=(key.id) selected[selected_key == key.id.to_string()] {
                                (key_names.get(&key.id).map_or("", String::as_str))
                            }
                        }
                    }
                }
                label for="f-model" { (text.model) input #f-model type="text" name="model" value=(current("model")); }
                label for="f-since" { (text.since) input #f-since type="date" name="since" value=(current("since")); }
                label for="f-until" { (text.until) input #f-until type="date" name="until" value=(current("until")); }
                button type="submit" { (text.filter) }
                a href=(format!("/api/account/usage?format=csv{filter_query}")) data-test="usage-csv" download="usage.csv" {
                    (text.download_csv)
                }
            }
            p.note { (text.tokens_note) }
            div.table-wrap {
                table {
                    thead {
                        tr {
                            th scope="col" { (text.time) " (UTC)" }
                            th scope="col" { (text.key) }
                            th scope="col" { (text.model) }
                            th scope="col" { (text.input) }
                            th scope="col" { (text.cached) }
                            th scope="col" { (text.cache_write) }
                            th scope="col" { (text.output) }
                            th scope="col" { (text.cost) }
                            th scope="col" { (text.status) }
                            th scope="col" { (text.request_id) }
                        }
                    }
                    tbody {
                        @for r in &page.records {
                            tr data-test="usage-row" data-request-id=(r.request_id) {
                                td { (short_time(r.created_at_unix_micros)) }
                                td { (key_names.get(&r.key_id).cloned().unwrap_or_else(|| r.key_id.to_string())) }
                                td.model { (r.model) }
                                td.num { (r.input_tokens) }
                                td.num { (r.cached_input_tokens) }
                                td.num { (r.cache_write_tokens) }
                                td.num { (r.output_tokens) }
                                td.num data-test="usage-cost" { (money(r.cost_nanos)) }
                                td class=(format!("status-{}", r.status)) { (r.status) }
                                td { code { (r.request_id) } }
                            }
                        }
                        @if page.records.is_empty() {
                            tr { td colspan="10" { (text.no_records) } }
                        }
                    }
                }
            }
            nav.pager aria-label=(text.usage) {
                @if form_value(query, "before").is_some_and(|b| !b.is_empty()) {
                    a href=(format!("/console/usage?{}", filter_query.trim_start_matches('&'))) { "← " (text.newest) }
                }
                @if let Some(next) = page.next_before_request_id.as_ref().filter(|_| !page.records.is_empty()) {
                    a href=(format!("/console/usage?before={}{filter_query}", encode(next))) data-test="usage-older" {
                        (text.older) " →"
                    }
                }
            }
        },
    ))
}

fn pricing(ctx: &Ctx<'_>, session: Option<&Session>) -> Markup {
    let text = ctx.text;
    let policy = ctx.app.policy.load();
    let group_name = session.and_then(|s| s.info.account.as_ref()).map(|a| a.group.clone());
    let groups = policy.catalog.groups();
    let group = group_name.as_deref().and_then(|name| groups.iter().copied().find(|g| g.name == name));
    layout(
        ctx,
        session,
        Some(Page::Pricing),
        text.pricing,
        html! {
            (catalog::pricing_note(&policy.catalog.currency, text))
            @if let Some(group) = group {
                p { (text.your_group_pays) " " strong { (group.name) " ×" (group.multiplier) } }
            }
            (catalog::pricing_table(&policy, group, text))
            @if session.is_none() {
                p { a href="/console" { (text.sign_in) " →" } }
            }
        },
    )
}

fn kind_text(kind: &str, text: &Text) -> String {
    match kind {
        "topup" => text.kind_topup.to_owned(),
        "redemption" => text.kind_redemption.to_owned(),
        "usage" => text.kind_usage.to_owned(),
        "adjustment" => text.kind_adjustment.to_owned(),
        other => other.to_owned(),
    }
}

async fn wallet(
    ctx: &Ctx<'_>,
    session: &Session,
    outcome: Option<Result<String, String>>,
) -> Result<Markup, ApiError> {
    let text = ctx.text;
    let entries = api::ledger_entries(ctx.app, session, 100).await?;
    // The balance after this page's changes (the session's copy predates a redemption).
    let balance = entries.first().map_or_else(|| account(session).balance_nanos, |e| e.balance_after_nanos);
    let csrf = &session.info.csrf_token;
    let topup = session.info.topup.clone().unwrap_or_default();
    Ok(layout(
        ctx,
        Some(session),
        Some(Page::Wallet),
        text.wallet,
        html! {
            @match &outcome {
                Some(Ok(notice)) => div.notice role="status" data-test="wallet-notice" { (notice) },
                Some(Err(error)) => div.error role="alert" data-test="wallet-error" { (error) },
                None => {},
            }
            div.cards {
                div.card {
                    div.label { (text.balance) }
                    div.value { span data-test="balance" { (money(balance)) } " " (session.info.currency) }
                }
            }
            h2 { (text.redeem) }
            form.stack method="post" action="/console/redeem" {
                input type="hidden" name=(CSRF_FIELD) value=(csrf);
                label for="redeem-code" { (text.redeem_code)
                    input #redeem-code type="text" name="code" required autocomplete="off" data-test="redeem-code";
                }
                button type="submit" data-test="redeem-submit" { (text.redeem) }
            }
            h2 { (text.top_up) }
            @if topup.enabled {
                p.note data-test="topup-note" { (text.topup_stripe) }
                form.stack method="post" action="/console/topup" {
                    input type="hidden" name=(CSRF_FIELD) value=(csrf);
                    label for="topup-amount" { (text.amount) " (" (session.info.currency) ")"
                        @if topup.amounts_nanos.is_empty() {
                            input #topup-amount type="text" name="amount" inputmode="decimal" required
                                placeholder=(topup.min_nanos.map(money).unwrap_or_default()) data-test="topup-amount";
                            span.muted {
                                (topup.min_nanos.map(money).unwrap_or_default()) " – " (topup.max_nanos.map(money).unwrap_or_default())
                            }
                        } @else {
                            select #topup-amount name="amount" data-test="topup-amount" {
                                @for amount in &topup.amounts_nanos { option value=(money(*amount)) { (money(*amount)) } }
                            }
                        }
                    }
                    button type="submit" data-test="topup-submit" { (text.pay) }
                }
            } @else {
                p.note data-test="topup-note" { (text.topup_not_configured) }
                form.stack method="post" action="/console/topup" {
                    input type="hidden" name=(CSRF_FIELD) value=(csrf);
                    label for="topup-amount" { (text.amount) " (" (session.info.currency) ")"
                        input #topup-amount type="text" name="amount" inputmode="decimal" disabled data-test="topup-amount";
                    }
                    button type="submit" disabled data-test="topup-submit" { (text.pay) }
                }
            }
            h2 { (text.ledger) }
            div.table-wrap {
                table {
                    thead {
                        tr {
                            th scope="col" { (text.time) " (UTC)" }
                            th scope="col" { (text.kind) }
                            th scope="col" { (text.change) }
                            th scope="col" { (text.balance_after) }
                            th scope="col" { (text.note) }
                        }
                    }
                    tbody {
                        @for e in &entries {
                            tr data-test="ledger-row" data-kind=(e.kind) {
                                td { (short_time(e.created_at_unix_micros)) }
                                td { (kind_text(&e.kind, text)) }
                                td.num data-test="ledger-amount" {
                                    @if e.amount_nanos > 0 { "+" } (money(e.amount_nanos))
                                }
                                td.num { (money(e.balance_after_nanos)) }
                                td {
                                    (e.note)
                                    @if let Some(id) = &e.request_id { " " code { (id) } }
                                }
                            }
                        }
                        @if entries.is_empty() {
                            tr { td colspan="5" { (text.no_ledger) } }
                        }
                    }
                }
            }
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers() {
        assert_eq!(safe_next(Some("/console/keys")), "/console/keys");
        assert_eq!(safe_next(Some("https://evil.example/console")), "/console");
        assert_eq!(safe_next(Some("/console//evil.example")), "/console");
        assert_eq!(safe_next(None), "/console");
        assert_eq!(day_after("2026-12-31").as_deref(), Some("2027-01-01T00:00:00Z"));
        assert_eq!(day_after("2026-12-31T00:00:00Z"), None);
        assert_eq!(encode("a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
        assert_eq!(short_time(1_796_083_200_000_000), "2026-12-01 00:00:00");
        assert_eq!(Page::of_path("/console/"), Some(Page::Dashboard));
        assert_eq!(Page::of_path("/console/keys"), Some(Page::Keys));
        assert_eq!(Page::of_path("/console/nope"), None);
    }
}
