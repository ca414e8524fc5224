//! The console's pages (`/console`): served as HTML with the hooks the browser test drives, and
//! a real browser (Debian's chromium and chromedriver, driven by Selenium from
//! `tests/sdk/console_check.py`) that signs in, spends with a key it made through the openai
//! SDK, finds the request's row and cost, redeems a code, switches to 简体中文 and saves a
//! screenshot of each page under `target/console-screenshots/`.
use std::{path::PathBuf, process::Command};

use router_tests::{
    Backend, Gateway,
    http_client::{get, send},
};
use serde_json::Value;

on_both_backends!(console_pages_in_a_real_browser, console_pages_over_plain_http);

fn set_password(gw: &Gateway, password: &str) {
    let output = gw
        .cp
        .ctl_with_stdin(&["account", "set-password", "acme", "--password-stdin"], &format!("{password}\n"));
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
}

/// The acme account in a `vip` group (prices × 1.5), with an email and a password.
async fn console_gateway(backend: Backend) -> Gateway {
    let gw = Gateway::start(backend, &[]).await;
    gw.cp.json(&["group", "add", "vip", "--multiplier", "1.5", "--all-models"]);
    gw.cp.json(&[
        "account",
        "update",
        "acme",
        "--group",
        "vip",
        "--email",
        "ops@acme.test",
        "--daily-limit",
        "20",
    ]);
    set_password(&gw, "acme console password");
    gw
}

fn screenshot_dir(backend: Backend) -> PathBuf {
    let name = match backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    };
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target/console-screenshots")).join(name)
}

async fn console_pages_in_a_real_browser(backend: Backend) {
    let gw = console_gateway(backend).await;
    let codes = gw.cp.json(&["code", "create", "--amount", "2.5"]);
    let code = codes[0]["code"].as_str().unwrap().to_owned();
    let shots = screenshot_dir(backend);
    let _ = std::fs::remove_dir_all(&shots);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/sdk/console_check.py");
    let url = gw.dp.url.clone();
    let dir = shots.clone();
    let output = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .arg(script)
            .env("ROUTER_URL", url)
            .env("CONSOLE_EMAIL", "ops@acme.test")
            .env("CONSOLE_PASSWORD", "acme console password")
            .env("CONSOLE_CODE", code)
            .env("SCREENSHOT_DIR", dir)
            .output()
    })
    .await
    .unwrap()
    .expect("python3 runs (tests/setup.sh installs chromium, chromium-driver and selenium)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report = format!("{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "the browser checks failed:\n{report}");
    assert!(stdout.contains("all console checks passed"), "{report}");
    let seen: Value =
        stdout.lines().find(|l| l.starts_with('{')).and_then(|l| serde_json::from_str(l).ok()).unwrap();

    // What the browser read is what the control plane has.
    assert_eq!(seen["balance"], "100", "{seen}");
    let records = gw.cp.json(&["usage", "--account", "acme", "--limit", "100"]);
    let record = records
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["request_id"] == seen["request_id"])
        .unwrap_or_else(|| panic!("no usage record for {seen}: {records}"))
        .clone();
    assert_eq!(record["status"], "ok");
    assert_eq!(seen["usage_cost"], record["cost"], "the Usage page shows the billed cost: {seen} {record}");
    let cost = router_tests::nanos(&record["cost"]);
    assert!(cost > 0, "{record}");
    let row = seen["usage_row"].as_str().unwrap();
    for field in ["input_tokens", "output_tokens"] {
        assert!(row.contains(&record[field].to_string()), "{field} of {record} in {row}");
    }
    // The key the browser made belongs to acme, in its group.
    let keys = gw.cp.json(&["key", "list", "--account", "acme"]);
    let made = keys.as_array().unwrap().iter().find(|k| k["name"] == "browser key").cloned().unwrap();
    assert_eq!(made["id"], record["key_id"]);
    assert!(seen["key_prefix"].as_str().unwrap().starts_with(made["prefix"].as_str().unwrap()), "{made}");
    // The redemption: +2.5 in the ledger; the wallet's balance is the account's.
    assert_eq!(seen["ledger_amount"], "+2.5", "{seen}");
    let account = gw.cp.json(&["account", "show", "acme"]);
    assert_eq!(seen["wallet_balance"], account["balance"], "{seen} {account}");
    assert_eq!(router_tests::nanos(&account["balance"]), 102_500_000_000 - cost);
    // The group's prices: gpt-4o-mini at 0.15 / 0.6 × 1.5.
    let mini = seen["price_rows"]["gpt-4o-mini"].as_str().unwrap();
    assert!(mini.contains("0.225") && mini.contains("0.9") && mini.contains("vip ×1.5"), "{mini}");
    // 简体中文.
    assert_eq!(seen["zh_pricing_title"], "价格");
    assert_eq!(seen["zh_dashboard_title"], "概览");
    assert!(seen["zh_nav"].as_str().unwrap().contains("钱包"), "{seen}");
    for page in ["sign-in", "dashboard", "keys", "usage", "pricing", "wallet", "pricing-zh", "dashboard-zh"] {
        let path = shots.join(format!("{page}.png"));
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(
            bytes.starts_with(b"\x89PNG") && bytes.len() > 5_000,
            "{} is not a screenshot",
            path.display()
        );
    }
}

/// Pages without a browser: the sign-in form when signed out, the hooks, CSRF on forms,
/// the language from `Accept-Language`, and `/pricing` sharing its table with the console.
async fn console_pages_over_plain_http(backend: Backend) {
    let gw = console_gateway(backend).await;
    let base = gw.dp.url.clone();
    let page = get(&format!("{base}/console/keys"), &[]).await.unwrap();
    assert_eq!(page.status, 200);
    let html = page.text();
    for hook in ["login-email", "login-password", "login-submit", "lang-switch"] {
        assert!(html.contains(&format!("data-test=\"{hook}\"")), "{hook} missing: {html}");
    }
    assert!(html.contains("<html lang=\"en\">"), "{html}");
    let zh =
        get(&format!("{base}/console"), &[("accept-language", "zh-CN,zh;q=0.9,en;q=0.5")]).await.unwrap();
    assert!(zh.text().contains("<html lang=\"zh-CN\">") && zh.text().contains("登录"), "{}", zh.text());

    // Sign in through the form: 303 to the page asked for, with the session cookie.
    let form = "email=ops%40acme.test&password=acme+console+password&next=%2Fconsole%2Fwallet";
    let headers = [("content-type", "application/x-www-form-urlencoded")];
    let signed = send(http::Method::POST, &format!("{base}/console/login"), &headers, form).await.unwrap();
    assert_eq!(signed.status, 303, "{}", signed.text());
    assert_eq!(signed.headers["location"], "/console/wallet");
    let set_cookie = signed.headers["set-cookie"].to_str().unwrap();
    assert!(set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Strict"), "{set_cookie}");
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    let wrong = "email=ops%40acme.test&password=nope";
    let refused = send(http::Method::POST, &format!("{base}/console/login"), &headers, wrong).await.unwrap();
    assert_eq!(refused.status, 401);
    assert!(refused.text().contains("data-test=\"login-error\""));

    let auth = [("cookie", cookie.as_str())];
    for (path, hooks) in [
        ("/console", &["balance", "spent-today", "weekly-limit", "monthly-limit"][..]),
        ("/console/keys", &["key-name", "key-create", "key-row", "key-revoke", "key-limits-save"][..]),
        ("/console/usage", &["usage-csv"][..]),
        ("/console/pricing", &["price-row"][..]),
        (
            "/console/wallet",
            &["redeem-code", "redeem-submit", "topup-amount", "topup-submit", "ledger-row"][..],
        ),
    ] {
        let page = get(&format!("{base}{path}"), &auth).await.unwrap();
        assert_eq!(page.status, 200, "{path}");
        assert_eq!(page.headers["content-type"], "text/html; charset=utf-8");
        let html = page.text();
        for hook in hooks.iter().chain(&["lang-switch"]) {
            assert!(html.contains(&format!("data-test=\"{hook}\"")), "{hook} missing on {path}: {html}");
        }
    }
    let dashboard = get(&format!("{base}/console"), &auth).await.unwrap().text();
    assert!(dashboard.contains("<span data-test=\"balance\">100</span>"), "{dashboard}");
    assert_eq!(dashboard.matches("class=\"bar\"").count(), 30, "30 day bars: {dashboard}");

    // A form post without the session's CSRF token changes nothing.
    let form_headers = [("cookie", cookie.as_str()), ("content-type", "application/x-www-form-urlencoded")];
    let forged = send(http::Method::POST, &format!("{base}/console/keys"), &form_headers, "name=forged")
        .await
        .unwrap();
    assert_eq!(forged.status, 403);
    let keys = gw.cp.json(&["key", "list", "--account", "acme"]);
    assert!(!keys.as_array().unwrap().iter().any(|k| k["name"] == "forged"), "{keys}");
    let csrf =
        dashboard.split("name=\"csrf\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();
    let made = send(
        http::Method::POST,
        &format!("{base}/console/keys"),
        &form_headers,
        format!("csrf={csrf}&name=made+here&daily_limit=1"),
    )
    .await
    .unwrap();
    assert_eq!(made.status, 200);
    let html = made.text();
    let secret = html.split("data-test=\"key-secret\">").nth(1).unwrap().split('<').next().unwrap();
    assert!(secret.starts_with("sk-"), "{html}");
    let keys = gw.cp.json(&["key", "list", "--account", "acme"]);
    let key = keys.as_array().unwrap().iter().find(|k| k["name"] == "made here").cloned().unwrap();
    assert_eq!(key["daily_limit"], "1", "{key}");
    // Its limits through the form: an emptied field removes that limit.
    let limits = format!("{base}/console/keys/{}/limits", key["id"]);
    let set = send(http::Method::POST, &limits, &form_headers, format!("csrf={csrf}&limit=2.5&daily_limit="))
        .await
        .unwrap();
    assert_eq!(
        (set.status, set.headers["location"].to_str().unwrap()),
        (303, "/console/keys"),
        "{}",
        set.text()
    );
    let keys = gw.cp.json(&["key", "list", "--account", "acme"]);
    let key = keys.as_array().unwrap().iter().find(|k| k["name"] == "made here").cloned().unwrap();
    assert_eq!(
        (key["limit"].as_str(), key["daily_limit"].clone()),
        (Some("2.5"), serde_json::json!(null)),
        "{key}"
    );
    // Revoke through the form: the key is refused on /v1.
    let revoke = format!("{base}/console/keys/{}/revoke", key["id"]);
    let revoked = send(http::Method::POST, &revoke, &form_headers, format!("csrf={csrf}")).await.unwrap();
    assert_eq!((revoked.status, revoked.headers["location"].to_str().unwrap()), (303, "/console/keys"));
    let keys = gw.cp.json(&["key", "list", "--account", "acme"]);
    assert!(
        keys.as_array().unwrap().iter().any(|k| k["name"] == "made here" && k["revoked"] == true),
        "{keys}"
    );
    // Top-up without a provider: the Wallet explains, 501.
    let topup = send(
        http::Method::POST,
        &format!("{base}/console/topup"),
        &form_headers,
        format!("csrf={csrf}&amount=5"),
    )
    .await
    .unwrap();
    assert_eq!(topup.status, 501);
    assert!(topup.text().contains("data-test=\"wallet-error\""));
    let webhook_url = format!("{base}/api/payments/stripe/webhook");
    let hook =
        send(http::Method::POST, &webhook_url, &[("stripe-signature", "t=1,v1=00")], "{}").await.unwrap();
    assert_eq!((hook.status, hook.json()["error"]["code"].as_str()), (501, Some("payments_not_configured")));

    // The language switch is remembered in a cookie.
    let switched = get(&format!("{base}/console/pricing?lang=zh-CN"), &auth).await.unwrap();
    assert!(switched.text().contains("<html lang=\"zh-CN\">"));
    let lang_cookie = switched.headers["set-cookie"].to_str().unwrap();
    assert!(lang_cookie.starts_with("cr_lang=zh-CN"), "{lang_cookie}");

    // /pricing and /console/pricing share the table: the public one lists every group.
    let public = get(&format!("{base}/pricing"), &[]).await.unwrap().text();
    assert!(
        public.contains("<table id=\"pricing\">") && public.contains("data-test=\"price-row\""),
        "{public}"
    );
    assert!(public.contains("default ×1, vip ×1.5"), "{public}");
    let mine = get(&format!("{base}/console/pricing"), &auth).await.unwrap().text();
    assert!(mine.contains("<table id=\"pricing\">") && mine.contains("0.225"), "{mine}");

    // Signing out ends the session: the form again.
    let out =
        send(http::Method::POST, &format!("{base}/console/logout"), &form_headers, format!("csrf={csrf}"))
            .await
            .unwrap();
    assert_eq!(out.status, 303);
    let after = get(&format!("{base}/console"), &auth).await.unwrap().text();
    assert!(
        after.contains("data-test=\"login-form\"") || after.contains("data-test=\"login-submit\""),
        "{after}"
    );
}
