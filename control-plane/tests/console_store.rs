//! Console sign-in and sessions at the storage layer, with an explicit clock: passwords,
//! emails, the sign-in rate limit per account and per address, and every way a session ends
//! (on SQLite and PostgreSQL).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod common;

use common::{Backend, TestDb};
use router_control_plane::{
    db::Db,
    error::StoreError,
    store::{
        accounts::{self, AccountUpdate},
        now_micros,
        sessions::{self, MAX_FAILED_SIGN_INS, SIGN_IN_WINDOW},
    },
};

const DAY: i64 = 86_400_000_000;
const WEEK: i64 = 7 * DAY;

on_both_backends!(
    emails_are_unique_ignoring_case,
    sign_in_opens_a_session_that_ends_every_way,
    failed_sign_ins_are_limited_per_account_and_address,
);

async fn account_with_password(db: &Db, name: &str, email: &str, password: &str) {
    accounts::add(db, name, None, Some(5_000_000_000), None, Some(email)).await.unwrap();
    let account = accounts::set_password(db, name, password).await.unwrap();
    assert!(account.has_password);
}

async fn emails_are_unique_ignoring_case(backend: Backend) {
    let test = TestDb::create(backend).await;
    let db = &test.db;
    let ann = accounts::add(db, "ann", None, None, None, Some(" Ann@Example.COM ")).await.unwrap();
    assert_eq!(ann.email.as_deref(), Some("ann@example.com"), "stored trimmed and lowercase");
    assert!(!ann.has_password && !ann.disabled);
    let taken = accounts::add(db, "ann2", None, None, None, Some("ANN@example.com")).await.unwrap_err();
    assert!(matches!(&taken, StoreError::AlreadyExists(m) if m.contains("ann@example.com")), "{taken:?}");
    assert!(accounts::get(db, "ann2").await.is_err(), "nothing was added");
    let bad = accounts::add(db, "bob", None, None, None, Some("not-an-email")).await.unwrap_err();
    assert!(matches!(bad, StoreError::Invalid(_)), "{bad:?}");

    accounts::add(db, "bob", None, None, None, None).await.unwrap();
    let clash = accounts::update(
        db,
        "bob",
        AccountUpdate { email: Some(Some("Ann@example.com")), ..Default::default() },
    )
    .await
    .unwrap_err();
    assert!(matches!(clash, StoreError::AlreadyExists(_)), "{clash:?}");
    let bob = accounts::update(
        db,
        "bob",
        AccountUpdate { email: Some(Some("Bob@Example.com")), ..Default::default() },
    )
    .await
    .unwrap();
    assert_eq!(bob.email.as_deref(), Some("bob@example.com"));
    let bob =
        accounts::update(db, "bob", AccountUpdate { email: Some(None), ..Default::default() }).await.unwrap();
    assert_eq!(bob.email, None);
    let short = accounts::set_password(db, "bob", "short").await.unwrap_err();
    assert!(matches!(short, StoreError::Invalid(_)), "{short:?}");
}

async fn sign_in_opens_a_session_that_ends_every_way(backend: Backend) {
    let test = TestDb::create(backend).await;
    let db = &test.db;
    account_with_password(db, "carol", "carol@example.com", "correct horse battery").await;
    let t0 = now_micros();

    // Good password, email in any case: a session whose token is stored only as a digest.
    let session = sessions::login(db, "Carol@Example.com", "correct horse battery", "10.0.0.1", t0, WEEK)
        .await
        .unwrap();
    assert_eq!(session.account.name, "carol");
    assert_eq!(session.expires_at, t0 + WEEK);
    assert_ne!(session.token, session.csrf_token);
    let info = sessions::session(db, &session.token, t0 + 1).await.unwrap();
    assert_eq!(
        (info.account.name.as_str(), info.csrf_token.as_str()),
        ("carol", session.csrf_token.as_str())
    );
    assert!(sessions::session(db, "not-a-token", t0).await.is_err());

    // Wrong password, unknown email: the same refusal.
    for (email, password) in [("carol@example.com", "wrong horse battery"), ("nobody@example.com", "x")] {
        let refused = sessions::login(db, email, password, "10.0.0.1", t0, WEEK).await.unwrap_err();
        assert!(
            matches!(&refused, StoreError::Unauthenticated(m) if m == "wrong email or password"),
            "{refused:?}"
        );
    }

    // Expiry: alive up to 7 days, gone after.
    assert!(sessions::session(db, &session.token, t0 + WEEK - 1).await.is_ok());
    let expired = sessions::session(db, &session.token, t0 + WEEK).await.unwrap_err();
    assert!(matches!(expired, StoreError::Unauthenticated(_)), "{expired:?}");

    // Logout ends that session only.
    let first =
        sessions::login(db, "carol@example.com", "correct horse battery", "a", t0, WEEK).await.unwrap();
    let second =
        sessions::login(db, "carol@example.com", "correct horse battery", "a", t0, WEEK).await.unwrap();
    sessions::logout(db, &first.token).await.unwrap();
    sessions::logout(db, &first.token).await.unwrap();
    assert!(sessions::session(db, &first.token, t0).await.is_err());
    assert!(sessions::session(db, &second.token, t0).await.is_ok());

    // A password change ends every session; the old password no longer works.
    accounts::set_password(db, "carol", "a new password").await.unwrap();
    assert!(sessions::session(db, &second.token, t0).await.is_err());
    assert!(sessions::login(db, "carol@example.com", "correct horse battery", "a", t0, WEEK).await.is_err());
    let third = sessions::login(db, "carol@example.com", "a new password", "a", t0, WEEK).await.unwrap();

    // Disabling ends sessions and refuses sign-in (only with the right password is it said).
    let disabled = AccountUpdate { disabled: Some(true), ..Default::default() };
    assert!(accounts::update(db, "carol", disabled).await.unwrap().disabled);
    assert!(sessions::session(db, &third.token, t0).await.is_err());
    let refused =
        sessions::login(db, "carol@example.com", "a new password", "a", t0, WEEK).await.unwrap_err();
    assert!(matches!(refused, StoreError::Forbidden(_)), "{refused:?}");
    let wrong = sessions::login(db, "carol@example.com", "not it at all", "a", t0, WEEK).await.unwrap_err();
    assert!(matches!(wrong, StoreError::Unauthenticated(_)), "{wrong:?}");
    let enabled = AccountUpdate { disabled: Some(false), ..Default::default() };
    accounts::update(db, "carol", enabled).await.unwrap();
    assert!(sessions::login(db, "carol@example.com", "a new password", "a", t0, WEEK).await.is_ok());

    // The token itself is stored nowhere.
    let last = sessions::login(db, "carol@example.com", "a new password", "a", t0, WEEK).await.unwrap();
    let dump = common_dump(&test).await;
    assert!(!dump.contains(&last.token), "the session token is stored only hashed");
    assert!(!dump.contains("a new password"));
}

/// Every row of the tables that hold console secrets, as text.
async fn common_dump(test: &TestDb) -> String {
    use diesel::QueryDsl;
    use router_control_plane::{
        db::schema::{account_sessions, accounts},
        with_conn,
    };
    async fn read(db: &Db) -> Result<String, StoreError> {
        use diesel_async::RunQueryDsl;
        with_conn!(db, |conn| {
            let sessions: Vec<(String, String)> = account_sessions::table
                .select((account_sessions::token_hash, account_sessions::csrf_token))
                .load(conn)
                .await?;
            let hashes: Vec<Option<String>> =
                accounts::table.select(accounts::password_hash).load(conn).await?;
            Ok(format!("{sessions:?}{hashes:?}"))
        })
    }
    let dump = read(&test.db).await.unwrap();
    assert!(dump.contains("$argon2id$"), "{dump}");
    dump
}

async fn failed_sign_ins_are_limited_per_account_and_address(backend: Backend) {
    let test = TestDb::create(backend).await;
    let db = &test.db;
    account_with_password(db, "dave", "dave@example.com", "dave's password").await;
    account_with_password(db, "erin", "erin@example.com", "erin's password").await;
    let t0 = now_micros();

    // Per account: ten failures from ten addresses, then even the right password waits.
    for i in 0..MAX_FAILED_SIGN_INS {
        let error = sessions::login(db, "dave@example.com", "wrong", &format!("10.1.0.{i}"), t0 + i, WEEK)
            .await
            .unwrap_err();
        assert!(matches!(error, StoreError::Unauthenticated(_)), "attempt {i}: {error:?}");
    }
    let limited = sessions::login(db, "dave@example.com", "dave's password", "10.9.9.9", t0 + 20, WEEK)
        .await
        .unwrap_err();
    let StoreError::RateLimited(seconds) = limited else { panic!("not limited: {limited:?}") };
    assert!((899..=900).contains(&seconds), "{seconds}");
    // Other accounts and addresses are not affected.
    assert!(
        sessions::login(db, "erin@example.com", "erin's password", "10.9.9.9", t0 + 20, WEEK).await.is_ok()
    );
    // Fifteen minutes after the first failure, one more attempt is allowed.
    let later = t0 + SIGN_IN_WINDOW + 1;
    assert!(
        sessions::login(db, "dave@example.com", "dave's password", "10.9.9.9", later, WEEK).await.is_ok()
    );
    // A good sign-in clears the account's failures.
    for i in 0..MAX_FAILED_SIGN_INS - 1 {
        let _ = sessions::login(db, "dave@example.com", "wrong", "10.2.0.1", later + i, WEEK).await;
    }
    assert!(
        sessions::login(db, "dave@example.com", "dave's password", "10.2.0.2", later + 20, WEEK)
            .await
            .is_ok()
    );
    assert!(matches!(
        sessions::login(db, "dave@example.com", "wrong", "10.2.0.3", later + 21, WEEK).await,
        Err(StoreError::Unauthenticated(_))
    ));

    // Per address: failures against many (even unknown) emails from one address.
    let t1 = later + SIGN_IN_WINDOW * 2;
    for i in 0..MAX_FAILED_SIGN_INS {
        let email = format!("guess{i}@example.com");
        let error = sessions::login(db, &email, "guess", "192.0.2.7", t1 + i, WEEK).await.unwrap_err();
        assert!(matches!(error, StoreError::Unauthenticated(_)), "{error:?}");
    }
    let limited = sessions::login(db, "erin@example.com", "erin's password", "192.0.2.7", t1 + 20, WEEK)
        .await
        .unwrap_err();
    assert!(matches!(limited, StoreError::RateLimited(_)), "{limited:?}");
    assert!(
        sessions::login(db, "erin@example.com", "erin's password", "192.0.2.8", t1 + 20, WEEK).await.is_ok()
    );

    // Concurrent guesses: no more than the limit are ever checked.
    let t2 = t1 + SIGN_IN_WINDOW * 2;
    let mut guesses = Vec::new();
    for i in 0..(MAX_FAILED_SIGN_INS * 2) {
        let db = db.clone();
        guesses.push(tokio::spawn(async move {
            sessions::login(&db, "erin@example.com", "wrong", &format!("198.51.100.{i}"), t2 + i, WEEK).await
        }));
    }
    let mut checked = 0;
    for guess in guesses {
        match guess.await.unwrap() {
            Err(StoreError::Unauthenticated(_)) => checked += 1,
            Err(StoreError::RateLimited(_)) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(checked, MAX_FAILED_SIGN_INS, "exactly the limit of guesses was checked");
}
