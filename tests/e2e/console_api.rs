//! The console's JSON API (`/api/account/*`) through a real data plane and control plane:
//! sign-in (good, wrong password, disabled account, rate limit), the session cookie, CSRF
//! refusals, logout and expiry, self-service keys (a revoked key is refused on `/v1` within a
//! second), usage pages and CSV, the ledger, redemption and the top-up refusal.
use std::time::Duration;

use http::Method;
use router_tests::{
    Backend, ControlPlane, DataPlane, Gateway, TestDb, eventually,
    http_client::{get, post_json, send},
};
use serde_json::{Value, json};

on_both_backends!(console_api_end_to_end, sessions_expire);

/// A signed-in browser: the cookie and the CSRF token.
struct Browser {
    cookie: String,
    csrf: String,
}

impl Browser {
    fn headers(&self) -> Vec<(&str, &str)> {
        vec![("cookie", self.cookie.as_str()), ("x-csrf-token", self.csrf.as_str())]
    }
}

async fn sign_in(base: &str, email: &str, password: &str) -> Result<Browser, (u16, Value, Option<String>)> {
    let answer =
        post_json(&format!("{base}/api/account/login"), &[], &json!({"email": email, "password": password}))
            .await
            .unwrap();
    if answer.status != 200 {
        let retry = answer.headers.get("retry-after").map(|v| v.to_str().unwrap().to_owned());
        return Err((answer.status, answer.json(), retry));
    }
    let set_cookie = answer.headers.get("set-cookie").unwrap().to_str().unwrap().to_owned();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set_cookie.contains(attribute), "{set_cookie}");
    }
    assert!(!set_cookie.contains("Secure"), "plain HTTP: no Secure attribute");
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    Ok(Browser { cookie, csrf: answer.json()["csrf_token"].as_str().unwrap().to_owned() })
}

fn set_password(cp: &ControlPlane, name: &str, password: &str) {
    let output =
        cp.ctl_with_stdin(&["account", "set-password", name, "--password-stdin"], &format!("{password}\n"));
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
}

async fn console_api_end_to_end(backend: Backend) {
    let gw = Gateway::start(backend, &[]).await;
    let base = gw.dp.url.clone();
    gw.cp.json(&["account", "update", "acme", "--email", "ops@acme.test", "--daily-limit", "20"]);
    gw.cp.json(&[
        "account",
        "update",
        "acme",
        "--weekly-limit",
        "70",
        "--monthly-limit",
        "250",
        "--rpm",
        "600",
    ]);
    set_password(&gw.cp, "acme", "acme password");

    // Wrong password, unknown email, disabled account.
    let (status, body, _) = sign_in(&base, "ops@acme.test", "wrong password").await.err().unwrap();
    assert_eq!((status, body["error"]["code"].as_str()), (401, Some("invalid_credentials")));
    let (status, _, _) = sign_in(&base, "nobody@acme.test", "acme password").await.err().unwrap();
    assert_eq!(status, 401);
    gw.cp.json(&["account", "update", "acme", "--disabled", "true"]);
    let (status, body, _) = sign_in(&base, "ops@acme.test", "acme password").await.err().unwrap();
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("account_disabled")));
    gw.cp.json(&["account", "update", "acme", "--disabled", "false"]);
    let answer = post_json(&format!("{base}/api/account/login"), &[], &json!({"email": "x"})).await.unwrap();
    assert_eq!(answer.status, 400);

    // Good sign-in (email in another case): the account as `account show` has it, plus email.
    let browser = sign_in(&base, "OPS@acme.test", "acme password").await.unwrap();
    let me = get(&format!("{base}/api/account"), &browser.headers()).await.unwrap();
    assert_eq!(me.status, 200, "{}", me.text());
    let me = me.json();
    assert_eq!((me["name"].as_str(), me["email"].as_str()), (Some("acme"), Some("ops@acme.test")));
    assert_eq!((me["balance"].as_str(), me["daily_limit"].as_str()), (Some("100"), Some("20")));
    assert_eq!(
        (me["weekly_limit"].as_str(), me["monthly_limit"].as_str(), me["rpm"].as_i64(), me["tpm"].as_i64()),
        (Some("70"), Some("250"), Some(600), None),
        "{me}"
    );
    for field in ["group", "spent_today", "spent_this_week", "spent_this_month", "reserved", "created_at"] {
        assert!(me.get(field).is_some(), "{field}");
    }
    assert_eq!(get(&format!("{base}/api/account"), &[]).await.unwrap().status, 401, "no cookie");
    let forged = get(&format!("{base}/api/account"), &[("cookie", "cr_session=forged")]).await.unwrap();
    assert_eq!((forged.status, forged.json()["error"]["code"].as_str()), (401, Some("invalid_session")));

    // Keys: CSRF needed to create; the secret is shown once; the account's group and limits.
    let keys_url = format!("{base}/api/account/keys");
    let no_csrf =
        post_json(&keys_url, &[("cookie", browser.cookie.as_str())], &json!({"name": "cli"})).await.unwrap();
    assert_eq!((no_csrf.status, no_csrf.json()["error"]["code"].as_str()), (403, Some("csrf_failed")));
    let wrong = post_json(&keys_url, &[("cookie", &browser.cookie), ("x-csrf-token", "nope")], &json!({}))
        .await
        .unwrap();
    assert_eq!(wrong.status, 403);
    let too_high = post_json(&keys_url, &browser.headers(), &json!({"daily_limit": "21"})).await.unwrap();
    assert_eq!(too_high.status, 400, "{}", too_high.text());
    let created =
        post_json(&keys_url, &browser.headers(), &json!({"name": "cli", "limit": "3.5", "daily_limit": "1"}))
            .await
            .unwrap();
    assert_eq!(created.status, 200, "{}", created.text());
    let created = created.json();
    let secret = created["key"].as_str().unwrap().to_owned();
    let key_id = created["id"].as_i64().unwrap();
    assert!(secret.starts_with("sk-"));
    assert_eq!((created["group"].as_str(), created["limit"].as_str()), (Some("default"), Some("3.5")));
    let listed = get(&keys_url, &browser.headers()).await.unwrap().json();
    let data = listed["data"].as_array().unwrap();
    assert_eq!(data.len(), 2, "the gateway's key and the new one");
    assert!(!listed.to_string().contains(&secret), "the secret is shown only at creation");

    // The new key works on /v1 and its request shows in usage, with its cost.
    let bearer = format!("Bearer {secret}");
    let chat = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]});
    // A refused request (the key not yet in this data plane's policy) leaves no usage record.
    let answer = eventually(Duration::from_secs(5), || async {
        let a =
            post_json(&gw.url("/v1/chat/completions"), &[("authorization", &bearer)], &chat).await.ok()?;
        (a.status == 200).then_some(a)
    })
    .await
    .expect("the new key is served");
    let request_id = answer.request_id();
    let usage_url = format!("{base}/api/account/usage?key={key_id}");
    let row = eventually(Duration::from_secs(10), || async {
        let page = get(&usage_url, &browser.headers()).await.ok()?.json();
        page["data"].as_array()?.iter().find(|r| r["request_id"] == request_id.as_str()).cloned()
    })
    .await
    .expect("the request's usage row");
    assert_eq!(row["model"], "gpt-4o-mini");
    assert!(router_tests::nanos(&row["cost"]) > 0);
    // More requests with the gateway's key, then pages of 2 that return each record once.
    for _ in 0..3 {
        let a = post_json(&gw.url("/v1/chat/completions"), &[("authorization", &gw.bearer())], &chat)
            .await
            .unwrap();
        assert_eq!(a.status, 200);
    }
    let all = gw.usage(eventually_count(&gw).await).await;
    let mut seen = Vec::new();
    let mut before = String::new();
    loop {
        let url = format!("{base}/api/account/usage?limit=2{before}");
        let page = get(&url, &browser.headers()).await.unwrap().json();
        let records = page["data"].as_array().unwrap();
        seen.extend(records.iter().map(|r| r["request_id"].as_str().unwrap().to_owned()));
        match page["next_before"].as_str() {
            Some(next) => before = format!("&before={next}"),
            None => break,
        }
    }
    let expected: Vec<String> = all.iter().map(|r| r["request_id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(seen, expected, "pages return every record once, newest first");
    let filtered =
        get(&format!("{base}/api/account/usage?model=no-such-model"), &browser.headers()).await.unwrap();
    assert_eq!(filtered.json()["data"].as_array().unwrap().len(), 0);
    let bad = get(&format!("{base}/api/account/usage?since=yesterday"), &browser.headers()).await.unwrap();
    assert_eq!(bad.status, 400);
    let csv = get(&format!("{base}/api/account/usage?format=csv"), &browser.headers()).await.unwrap();
    assert_eq!(csv.status, 200);
    assert!(csv.headers["content-type"].to_str().unwrap().starts_with("text/csv"));
    let text = csv.text();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("created_at,request_id,key_id,model"));
    assert_eq!(lines.len(), expected.len() + 1, "{text}");
    assert!(text.contains(&request_id));

    // Limits of an existing key: set within the account's own, removed with null, never on
    // another account's key.
    let other = gw.cp.json(&["account", "add", "other"]);
    let other_key = gw.cp.json(&["key", "create", "--account", "other"])["id"].as_i64().unwrap();
    let limits_url = format!("{keys_url}/{key_id}/limits");
    let set = post_json(&limits_url, &browser.headers(), &json!({"daily_limit": "2"})).await.unwrap();
    assert_eq!(set.status, 200, "{}", set.text());
    assert_eq!((set.json()["daily_limit"].as_str(), set.json()["limit"].as_str()), (Some("2"), Some("3.5")));
    let too_high = post_json(&limits_url, &browser.headers(), &json!({"daily_limit": "20.5"})).await.unwrap();
    assert_eq!(too_high.status, 400, "{}", too_high.text());
    let bad = post_json(&limits_url, &browser.headers(), &json!({"limit": 5})).await.unwrap();
    assert_eq!(bad.status, 400, "{}", bad.text());
    let unknown = post_json(&limits_url, &browser.headers(), &json!({"rpm": "5"})).await.unwrap();
    assert_eq!(unknown.status, 400, "{}", unknown.text());
    let no_csrf = post_json(&limits_url, &[("cookie", browser.cookie.as_str())], &json!({"limit": null}))
        .await
        .unwrap();
    assert_eq!(no_csrf.status, 403);
    let foreign =
        post_json(&format!("{keys_url}/{other_key}/limits"), &browser.headers(), &json!({"limit": "1"}))
            .await
            .unwrap();
    assert_eq!(foreign.status, 404, "{}", foreign.text());
    let cleared = post_json(&limits_url, &browser.headers(), &json!({"limit": null})).await.unwrap();
    assert_eq!(
        (cleared.json()["limit"].clone(), cleared.json()["daily_limit"].as_str()),
        (json!(null), Some("2"))
    );
    let shown = gw.cp.json(&["key", "list", "--account", "acme"]);
    let shown = shown.as_array().unwrap().iter().find(|k| k["id"] == key_id).cloned().unwrap();
    assert_eq!((shown["limit"].clone(), shown["daily_limit"].as_str()), (json!(null), Some("2")), "{shown}");

    // Revoke: the key is refused on /v1 within a second; another account's key is not ours.
    let foreign =
        send(Method::POST, &format!("{keys_url}/{other_key}/revoke"), &browser.headers(), "").await.unwrap();
    assert_eq!(foreign.status, 404, "{other}");
    let no_csrf =
        send(Method::POST, &format!("{keys_url}/{key_id}/revoke"), &[("cookie", &browser.cookie)], "")
            .await
            .unwrap();
    assert_eq!(no_csrf.status, 403);
    let revoked =
        send(Method::POST, &format!("{keys_url}/{key_id}/revoke"), &browser.headers(), "").await.unwrap();
    assert_eq!((revoked.status, revoked.json()["status"].as_str()), (200, Some("revoked")));
    let started = std::time::Instant::now();
    let refused = eventually(Duration::from_secs(1), || async {
        let a =
            post_json(&gw.url("/v1/chat/completions"), &[("authorization", &bearer)], &chat).await.ok()?;
        (a.status == 401).then_some(())
    })
    .await;
    assert!(refused.is_some(), "the revoked key was still served after {:?}", started.elapsed());

    // Redeem a code; the ledger shows it.
    let code =
        gw.cp.json(&["code", "create", "--amount", "2.000000001"])[0]["code"].as_str().unwrap().to_owned();
    let redeem_url = format!("{base}/api/account/redeem");
    let no_csrf =
        post_json(&redeem_url, &[("cookie", &browser.cookie)], &json!({"code": code})).await.unwrap();
    assert_eq!(no_csrf.status, 403);
    let redeemed = post_json(&redeem_url, &browser.headers(), &json!({"code": code})).await.unwrap();
    assert_eq!((redeemed.status, redeemed.json()["amount"].as_str()), (200, Some("2.000000001")));
    let again = post_json(&redeem_url, &browser.headers(), &json!({"code": code})).await.unwrap();
    assert_eq!(again.status, 400, "a code works once");
    let ledger = get(&format!("{base}/api/account/ledger"), &browser.headers()).await.unwrap().json();
    let entries = ledger["data"].as_array().unwrap();
    assert_eq!(
        (entries[0]["kind"].as_str(), entries[0]["amount"].as_str()),
        (Some("redemption"), Some("2.000000001"))
    );
    assert!(entries.iter().any(|e| e["kind"] == "usage"));
    assert_eq!(entries.last().unwrap()["kind"], "topup", "the opening balance");
    let me = get(&format!("{base}/api/account"), &browser.headers()).await.unwrap().json();
    assert_eq!(me["balance"], entries[0]["balance_after"]);

    // Top-up without a payment provider.
    let topup_url = format!("{base}/api/account/topup");
    let topup = post_json(&topup_url, &browser.headers(), &json!({"amount": "10"})).await.unwrap();
    assert_eq!(
        (topup.status, topup.json()["error"]["code"].as_str()),
        (501, Some("payments_not_configured"))
    );
    assert_eq!(post_json(&topup_url, &[("cookie", &browser.cookie)], &json!({})).await.unwrap().status, 403);

    // Logout (CSRF needed) ends the session; a password change ends the others.
    let second = sign_in(&base, "ops@acme.test", "acme password").await.unwrap();
    let logout_url = format!("{base}/api/account/logout");
    assert_eq!(
        send(Method::POST, &logout_url, &[("cookie", &browser.cookie)], "").await.unwrap().status,
        403
    );
    let out = send(Method::POST, &logout_url, &browser.headers(), "").await.unwrap();
    assert_eq!(out.status, 200);
    assert!(out.headers["set-cookie"].to_str().unwrap().contains("Max-Age=0"));
    assert_eq!(get(&format!("{base}/api/account"), &browser.headers()).await.unwrap().status, 401);
    assert_eq!(get(&format!("{base}/api/account"), &second.headers()).await.unwrap().status, 200);
    set_password(&gw.cp, "acme", "another password");
    assert_eq!(get(&format!("{base}/api/account"), &second.headers()).await.unwrap().status, 401);

    // The sign-in limit: ten failures from this address (one, for an unknown email, was made
    // above; the account's own were cleared by its sign-in), then 429 with
    // retry-after even with the right password.
    for i in 0..9 {
        let (status, _, _) = sign_in(&base, "ops@acme.test", "guess").await.err().unwrap();
        assert_eq!(status, 401, "attempt {i}");
    }
    let (status, body, retry) = sign_in(&base, "ops@acme.test", "another password").await.err().unwrap();
    assert_eq!((status, body["error"]["code"].as_str()), (429, Some("rate_limit_exceeded")));
    let retry: u64 = retry.expect("retry-after").parse().unwrap();
    assert!((1..=900).contains(&retry), "{retry}");
    assert!(!gw.cp.process.log().contains("another password"));
    assert!(!gw.dp.process.log().contains("another password"));
}

/// How many usage records the control plane will hold: the requests made so far.
async fn eventually_count(gw: &Gateway) -> usize {
    eventually(Duration::from_secs(10), || async {
        let records = gw.cp.json(&["usage", "--account", "acme", "--limit", "1000"]);
        let n = records.as_array()?.len();
        (n == 4).then_some(n)
    })
    .await
    .expect("usage records arrive")
}

async fn sessions_expire(backend: Backend) {
    let db = TestDb::create(backend).await.unwrap();
    let cp = ControlPlane::start_with(
        &db.url,
        &format!("adm-{}", router_tests::random_name(20)),
        &format!("node-{}", router_tests::random_name(20)),
        &[("ROUTER_SESSION_LIFETIME", "1")],
    )
    .unwrap();
    cp.json(&["account", "add", "ivy", "--email", "ivy@example.com"]);
    set_password(&cp, "ivy", "ivy's password");
    let dp = DataPlane::start(&cp, &db.dir.join("spool"), &[]).await.unwrap();
    let browser = sign_in(&dp.url, "ivy@example.com", "ivy's password").await.unwrap();
    let me = get(&format!("{}/api/account", dp.url), &browser.headers()).await.unwrap();
    assert_eq!(me.status, 200);
    // A one-second session: refused once its second is over (waited for as a condition).
    let ended = eventually(Duration::from_secs(5), || async {
        let answer = get(&format!("{}/api/account", dp.url), &browser.headers()).await.ok()?;
        (answer.status == 401).then_some(answer)
    })
    .await
    .expect("the session ends");
    assert_eq!(ended.json()["error"]["code"], "invalid_session");
}
