//! Diesel table definitions, shared by both backends (see `migrations/sqlite` and
//! `migrations/postgres`: the same columns with per-backend id generation).
#![allow(missing_docs)]

diesel::table! {
    policy_state (id) {
        id -> BigInt,
        version -> BigInt,
    }
}

diesel::table! {
    policy_removals (id) {
        id -> BigInt,
        version -> BigInt,
        kind -> Text,
        entity_id -> BigInt,
    }
}

diesel::table! {
    token_groups (id) {
        id -> BigInt,
        name -> Text,
        multiplier_micros -> BigInt,
        all_models -> Bool,
        models -> Text,
        version -> BigInt,
        created_at -> BigInt,
        rpm -> Nullable<BigInt>,
        tpm -> Nullable<BigInt>,
        max_concurrent -> Nullable<BigInt>,
    }
}

diesel::table! {
    models (id) {
        id -> BigInt,
        name -> Text,
        billing -> Text,
        input_price -> Nullable<BigInt>,
        output_price -> Nullable<BigInt>,
        cached_input_price -> Nullable<BigInt>,
        cache_write_price -> Nullable<BigInt>,
        per_call_price -> Nullable<BigInt>,
        max_output_tokens -> Nullable<BigInt>,
        version -> BigInt,
        created_at -> BigInt,
    }
}

diesel::table! {
    model_groups (id) {
        id -> BigInt,
        name -> Text,
        models -> Text,
        billing -> Nullable<Text>,
        input_price -> Nullable<BigInt>,
        output_price -> Nullable<BigInt>,
        cached_input_price -> Nullable<BigInt>,
        cache_write_price -> Nullable<BigInt>,
        per_call_price -> Nullable<BigInt>,
        version -> BigInt,
        created_at -> BigInt,
    }
}

diesel::table! {
    model_aliases (id) {
        id -> BigInt,
        name -> Text,
        target -> Text,
        version -> BigInt,
        created_at -> BigInt,
    }
}

diesel::table! {
    channels (id) {
        id -> BigInt,
        name -> Text,
        channel_type -> Text,
        base_url -> Text,
        api_key -> Text,
        models -> Text,
        priority -> Integer,
        weight -> Integer,
        model_map -> Text,
        api_version -> Nullable<Text>,
        enabled -> Bool,
        version -> BigInt,
        created_at -> BigInt,
        protocols -> Text,
        messages_base_url -> Nullable<Text>,
        disabled_reason -> Nullable<Text>,
    }
}

diesel::table! {
    accounts (id) {
        id -> BigInt,
        name -> Text,
        group_id -> BigInt,
        balance -> BigInt,
        daily_limit -> Nullable<BigInt>,
        spent_today -> BigInt,
        spent_day -> BigInt,
        version -> BigInt,
        created_at -> BigInt,
        email -> Nullable<Text>,
        password_hash -> Nullable<Text>,
        disabled -> Bool,
        rpm -> Nullable<BigInt>,
        tpm -> Nullable<BigInt>,
        max_concurrent -> Nullable<BigInt>,
        weekly_limit -> Nullable<BigInt>,
        monthly_limit -> Nullable<BigInt>,
        spent_week -> BigInt,
        spent_week_no -> BigInt,
        spent_month -> BigInt,
        spent_month_no -> BigInt,
    }
}

diesel::table! {
    account_sessions (id) {
        id -> BigInt,
        token_hash -> Text,
        account_id -> BigInt,
        csrf_token -> Text,
        created_at -> BigInt,
        expires_at -> BigInt,
    }
}

diesel::table! {
    sign_in_attempts (id) {
        id -> BigInt,
        account_id -> Nullable<BigInt>,
        address -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    api_keys (id) {
        id -> BigInt,
        account_id -> BigInt,
        name -> Text,
        prefix -> Text,
        secret_hash -> Text,
        group_id -> Nullable<BigInt>,
        spend_limit -> Nullable<BigInt>,
        spent -> BigInt,
        daily_limit -> Nullable<BigInt>,
        spent_today -> BigInt,
        spent_day -> BigInt,
        models -> Text,
        expires_at -> Nullable<BigInt>,
        revoked -> Bool,
        version -> BigInt,
        created_at -> BigInt,
        rpm -> Nullable<BigInt>,
        tpm -> Nullable<BigInt>,
        max_concurrent -> Nullable<BigInt>,
        weekly_limit -> Nullable<BigInt>,
        monthly_limit -> Nullable<BigInt>,
        spent_week -> BigInt,
        spent_week_no -> BigInt,
        spent_month -> BigInt,
        spent_month_no -> BigInt,
    }
}

diesel::table! {
    redemption_codes (id) {
        id -> BigInt,
        code -> Text,
        amount -> BigInt,
        redeemed_by -> Nullable<BigInt>,
        redeemed_at -> Nullable<BigInt>,
        created_at -> BigInt,
        code_prefix -> Text,
    }
}

diesel::table! {
    ledger (id) {
        id -> BigInt,
        account_id -> BigInt,
        kind -> Text,
        amount -> BigInt,
        balance_after -> BigInt,
        request_id -> Nullable<Text>,
        note -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    // Its primary key is `(created_at, request_id)` on PostgreSQL; SQLite keeps a row id too.
    usage_records (request_id) {
        request_id -> Text,
        key_id -> BigInt,
        account_id -> BigInt,
        model -> Text,
        channel -> Text,
        endpoint -> Text,
        input_tokens -> BigInt,
        cached_input_tokens -> BigInt,
        cache_write_tokens -> BigInt,
        output_tokens -> BigInt,
        cost -> BigInt,
        status -> Text,
        duration_ms -> BigInt,
        first_byte_ms -> BigInt,
        node_id -> Text,
        created_at -> BigInt,
        usage_adjusted -> Bool,
        requested_model -> Nullable<Text>,
        client_protocol -> Text,
        upstream_protocol -> Text,
    }
}

diesel::table! {
    // Requests, tokens and cost per account, key, model, channel and hour (its first micro).
    usage_hourly (account_id, hour, key_id, model, channel) {
        account_id -> BigInt,
        key_id -> BigInt,
        model -> Text,
        channel -> Text,
        hour -> BigInt,
        requests -> BigInt,
        input_tokens -> BigInt,
        cached_input_tokens -> BigInt,
        cache_write_tokens -> BigInt,
        output_tokens -> BigInt,
        cost -> BigInt,
    }
}

diesel::table! {
    usage_quarantine (id) {
        id -> BigInt,
        digest -> Text,
        node_id -> Text,
        request_id -> Text,
        key_id -> BigInt,
        reason -> Text,
        report -> Binary,
        received_at -> BigInt,
    }
}

diesel::table! {
    leases (id) {
        id -> Text,
        key_id -> BigInt,
        account_id -> BigInt,
        node_id -> Text,
        held -> BigInt,
        day -> BigInt,
        expires_at -> BigInt,
        created_at -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::table! {
    payment_orders (id) {
        id -> BigInt,
        account_id -> BigInt,
        provider -> Text,
        amount -> BigInt,
        currency -> Text,
        status -> Text,
        session_id -> Nullable<Text>,
        checkout_url -> Nullable<Text>,
        created_at -> BigInt,
        updated_at -> BigInt,
        paid_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    rate_grants (key_id, node_id, slot) {
        key_id -> BigInt,
        account_id -> BigInt,
        node_id -> Text,
        slot -> BigInt,
        requests -> BigInt,
        tokens -> BigInt,
        concurrent -> BigInt,
        expires_at -> BigInt,
    }
}

diesel::joinable!(accounts -> token_groups (group_id));
diesel::joinable!(payment_orders -> accounts (account_id));
diesel::joinable!(api_keys -> accounts (account_id));
diesel::joinable!(ledger -> accounts (account_id));
diesel::joinable!(account_sessions -> accounts (account_id));
diesel::joinable!(redemption_codes -> accounts (redeemed_by));

diesel::allow_tables_to_appear_in_same_query!(
    policy_state,
    policy_removals,
    token_groups,
    models,
    model_groups,
    model_aliases,
    channels,
    accounts,
    account_sessions,
    sign_in_attempts,
    api_keys,
    redemption_codes,
    ledger,
    usage_records,
    usage_hourly,
    usage_quarantine,
    leases,
    payment_orders,
    rate_grants,
);
