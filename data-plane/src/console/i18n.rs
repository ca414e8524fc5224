//! The console's two languages: English and 简体中文, chosen by a `?lang=` switch (remembered
//! in a cookie), else by `Accept-Language`. Every string a page shows is a field of [`Text`],
//! so a string missing in one language does not compile.
use http::HeaderMap;

use super::cookie;

/// The cookie that remembers the language switch.
pub const LANG_COOKIE: &str = "cr_lang";

/// A console language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    /// English.
    En,
    /// Simplified Chinese.
    Zh,
}

impl Lang {
    /// The language named by a `lang` value or cookie (`en`, `zh`, `zh-CN`, …).
    pub fn named(value: &str) -> Option<Lang> {
        let value = value.trim().to_ascii_lowercase();
        if value == "en" || value.starts_with("en-") {
            Some(Lang::En)
        } else if value == "zh" || value.starts_with("zh-") {
            Some(Lang::Zh)
        } else {
            None
        }
    }

    /// The preferred of our languages in an `Accept-Language` header (highest `q` first; the
    /// first listed wins a tie); English when it names neither.
    pub fn from_accept_language(header: &str) -> Lang {
        let mut best: Option<(u32, Lang)> = None;
        for item in header.split(',') {
            let mut parts = item.split(';');
            let tag = parts.next().unwrap_or_default();
            let q = parts
                .find_map(|p| p.trim().strip_prefix("q="))
                .and_then(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            // q has at most 3 decimals: compare it as thousandths.
            let q = (q.clamp(0.0, 1.0) * 1000.0).round() as u32;
            if let Some(lang) = Lang::named(tag)
                && q > 0
                && best.is_none_or(|(b, _)| q > b)
            {
                best = Some((q, lang));
            }
        }
        best.map_or(Lang::En, |(_, lang)| lang)
    }

    /// The language of a request: its `?lang=` (the switch), its cookie, `Accept-Language`.
    pub fn of_request(headers: &HeaderMap, asked: Option<&str>) -> Lang {
        asked
            .and_then(Lang::named)
            .or_else(|| cookie(headers, LANG_COOKIE).and_then(Lang::named))
            .unwrap_or_else(|| {
                headers
                    .get(http::header::ACCEPT_LANGUAGE)
                    .and_then(|v| v.to_str().ok())
                    .map_or(Lang::En, Lang::from_accept_language)
            })
    }

    /// The `lang` attribute of the page.
    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Zh => "zh-CN",
        }
    }

    /// The other language (what the switch offers).
    pub fn other(self) -> Lang {
        match self {
            Lang::En => Lang::Zh,
            Lang::Zh => Lang::En,
        }
    }

    /// The language's own name.
    pub fn own_name(self) -> &'static str {
        match self {
            Lang::En => "English",
            Lang::Zh => "简体中文",
        }
    }

    /// The strings of the language.
    pub fn text(self) -> &'static Text {
        match self {
            Lang::En => &EN,
            Lang::Zh => &ZH,
        }
    }
}

/// Every string the console shows.
#[derive(Debug)]
pub struct Text {
    pub console: &'static str,
    pub dashboard: &'static str,
    pub keys: &'static str,
    pub usage: &'static str,
    pub pricing: &'static str,
    pub wallet: &'static str,
    pub sign_in: &'static str,
    pub sign_in_intro: &'static str,
    pub sign_out: &'static str,
    pub email: &'static str,
    pub password: &'static str,
    pub wrong_credentials: &'static str,
    pub too_many_attempts: &'static str,
    pub account_disabled: &'static str,
    pub session_over: &'static str,
    pub unavailable: &'static str,
    pub signed_in_as: &'static str,
    pub balance: &'static str,
    pub reserved: &'static str,
    pub reserved_note: &'static str,
    pub spent_today: &'static str,
    pub spent_this_week: &'static str,
    pub spent_this_month: &'static str,
    pub limit: &'static str,
    pub no_limit: &'static str,
    pub group: &'static str,
    pub daily_spend: &'static str,
    pub daily_spend_desc: &'static str,
    pub spend_by_model: &'static str,
    pub spend_by_model_desc: &'static str,
    pub no_usage_yet: &'static str,
    pub your_keys: &'static str,
    pub prefix: &'static str,
    pub name: &'static str,
    pub limits: &'static str,
    pub total_limit: &'static str,
    pub daily_limit: &'static str,
    pub weekly_limit: &'static str,
    pub monthly_limit: &'static str,
    pub rate_limits: &'static str,
    pub set_limits: &'static str,
    pub per_minute: &'static str,
    pub tokens_per_minute: &'static str,
    pub in_flight: &'static str,
    pub spent: &'static str,
    pub status: &'static str,
    pub active: &'static str,
    pub revoked: &'static str,
    pub expires: &'static str,
    pub revoke: &'static str,
    pub revoke_confirm: &'static str,
    pub create_key: &'static str,
    pub create_key_note: &'static str,
    pub optional: &'static str,
    pub new_key_secret: &'static str,
    pub new_key_note: &'static str,
    pub copy: &'static str,
    pub no_keys: &'static str,
    pub time: &'static str,
    pub key: &'static str,
    pub model: &'static str,
    pub input: &'static str,
    pub cached: &'static str,
    pub cache_write: &'static str,
    pub output: &'static str,
    pub cost: &'static str,
    pub request_id: &'static str,
    pub all_keys: &'static str,
    pub since: &'static str,
    pub until: &'static str,
    pub filter: &'static str,
    pub older: &'static str,
    pub newest: &'static str,
    pub download_csv: &'static str,
    pub no_records: &'static str,
    pub tokens_note: &'static str,
    pub billing: &'static str,
    pub per_token: &'static str,
    pub per_call: &'static str,
    pub cached_input: &'static str,
    pub model_group: &'static str,
    pub groups: &'static str,
    pub prices_in: &'static str,
    pub sentence_end: &'static str,
    pub pricing_note: &'static str,
    pub your_group_pays: &'static str,
    pub no_models: &'static str,
    pub redeem: &'static str,
    pub redeem_code: &'static str,
    pub redeemed: &'static str,
    pub top_up: &'static str,
    pub amount: &'static str,
    pub pay: &'static str,
    pub topup_not_configured: &'static str,
    pub topup_stripe: &'static str,
    pub order: &'static str,
    pub payment_pending: &'static str,
    pub ledger: &'static str,
    pub kind: &'static str,
    pub change: &'static str,
    pub balance_after: &'static str,
    pub note: &'static str,
    pub no_ledger: &'static str,
    pub kind_topup: &'static str,
    pub kind_redemption: &'static str,
    pub kind_usage: &'static str,
    pub kind_adjustment: &'static str,
    pub error: &'static str,
    pub main_content: &'static str,
}

/// English.
pub static EN: Text = Text {
    console: "Console",
    dashboard: "Dashboard",
    keys: "Keys",
    usage: "Usage",
    pricing: "Pricing",
    wallet: "Wallet",
    sign_in: "Sign in",
    sign_in_intro: "Sign in with the email and password your operator set for your account.",
    sign_out: "Sign out",
    email: "Email",
    password: "Password",
    wrong_credentials: "Wrong email or password.",
    too_many_attempts: "Too many failed sign-ins. Try again in",
    account_disabled: "This account is disabled.",
    session_over: "Your session has ended. Please sign in again.",
    unavailable: "The service is unavailable; try again shortly.",
    signed_in_as: "Signed in as",
    balance: "Balance",
    reserved: "Reserved",
    reserved_note: "held by requests in flight; not yet spent",
    spent_today: "Spent today",
    spent_this_week: "Spent this week",
    spent_this_month: "Spent this month",
    limit: "limit",
    no_limit: "no limit",
    group: "Group",
    daily_spend: "Daily spend, last 30 days",
    daily_spend_desc: "One bar per UTC day; the height is the day's spend.",
    spend_by_model: "Spend by model, last 30 days",
    spend_by_model_desc: "One bar per model; the length is its spend.",
    no_usage_yet: "No usage in the last 30 days.",
    your_keys: "Your API keys",
    prefix: "Prefix",
    name: "Name",
    limits: "Limits",
    total_limit: "Total limit",
    daily_limit: "Daily limit",
    weekly_limit: "Weekly limit",
    monthly_limit: "Monthly limit",
    rate_limits: "Rate limits",
    set_limits: "Set limits",
    per_minute: "requests/min",
    tokens_per_minute: "tokens/min",
    in_flight: "in flight",
    spent: "Spent",
    status: "Status",
    active: "active",
    revoked: "revoked",
    expires: "Expires",
    revoke: "Revoke",
    revoke_confirm: "Revoke this key? Apps using it stop working at once.",
    create_key: "Create key",
    create_key_note: "A new key belongs to your account's group and stays within your account's limits.",
    optional: "optional",
    new_key_secret: "Your new key",
    new_key_note: "Copy it now: it is shown only this once.",
    copy: "Copy",
    no_keys: "No keys yet.",
    time: "Time",
    key: "Key",
    model: "Model",
    input: "Input",
    cached: "Cached",
    cache_write: "Cache write",
    output: "Output",
    cost: "Cost",
    request_id: "Request id",
    all_keys: "All keys",
    since: "From",
    until: "Until",
    filter: "Filter",
    older: "Older",
    newest: "Newest",
    download_csv: "Download CSV",
    no_records: "No requests match.",
    tokens_note: "Token counts as billed; the cost is what your balance was charged.",
    billing: "Billing",
    per_token: "per token",
    per_call: "per call",
    cached_input: "Cached input",
    model_group: "Model group",
    groups: "Groups",
    prices_in: "Prices in ",
    sentence_end: ".",
    pricing_note: "Token prices are per 1,000,000 tokens; per-call prices are per request. Each group's multiplier scales the prices for keys in that group. A model not reachable by your key's group is refused before any charge.",
    your_group_pays: "What your group pays (its multiplier applied):",
    no_models: "No models are priced yet.",
    redeem: "Redeem",
    redeem_code: "Redemption code",
    redeemed: "Redeemed; your balance is now",
    top_up: "Top up",
    amount: "Amount",
    pay: "Pay",
    topup_not_configured: "Online payment is not set up on this gateway: top-ups are made by the operator, or redeem a code above.",
    topup_stripe: "Pay by card through Stripe; the amount is credited as soon as Stripe confirms the payment.",
    order: "Order",
    payment_pending: "Thank you: the balance is credited when Stripe confirms the payment (usually within seconds); reload to see it.",
    ledger: "Ledger",
    kind: "Kind",
    change: "Change",
    balance_after: "Balance after",
    note: "Note",
    no_ledger: "No balance changes yet.",
    kind_topup: "top-up",
    kind_redemption: "redemption",
    kind_usage: "usage",
    kind_adjustment: "adjustment",
    error: "Error",
    main_content: "Skip to content",
};

/// 简体中文.
pub static ZH: Text = Text {
    console: "控制台",
    dashboard: "概览",
    keys: "密钥",
    usage: "用量",
    pricing: "价格",
    wallet: "钱包",
    sign_in: "登录",
    sign_in_intro: "使用运营者为您的账户设置的邮箱和密码登录。",
    sign_out: "退出登录",
    email: "邮箱",
    password: "密码",
    wrong_credentials: "邮箱或密码错误。",
    too_many_attempts: "登录失败次数过多，请稍后再试：",
    account_disabled: "此账户已被停用。",
    session_over: "会话已结束，请重新登录。",
    unavailable: "服务暂时不可用，请稍后再试。",
    signed_in_as: "当前账户",
    balance: "余额",
    reserved: "预留",
    reserved_note: "进行中的请求暂时占用，尚未扣费",
    spent_today: "今日消费",
    spent_this_week: "本周消费",
    spent_this_month: "本月消费",
    limit: "限额",
    no_limit: "无限额",
    group: "分组",
    daily_spend: "近 30 天每日消费",
    daily_spend_desc: "每根柱子代表一个 UTC 日，高度为当日消费。",
    spend_by_model: "近 30 天各模型消费",
    spend_by_model_desc: "每根条代表一个模型，长度为其消费。",
    no_usage_yet: "近 30 天没有用量。",
    your_keys: "您的 API 密钥",
    prefix: "前缀",
    name: "名称",
    limits: "限额",
    total_limit: "总限额",
    daily_limit: "每日限额",
    weekly_limit: "每周限额",
    monthly_limit: "每月限额",
    rate_limits: "速率限制",
    set_limits: "设置限额",
    per_minute: "次请求/分钟",
    tokens_per_minute: "tokens/分钟",
    in_flight: "个并发",
    spent: "已消费",
    status: "状态",
    active: "可用",
    revoked: "已吊销",
    expires: "过期时间",
    revoke: "吊销",
    revoke_confirm: "确定吊销此密钥？使用它的应用将立即无法访问。",
    create_key: "创建密钥",
    create_key_note: "新密钥属于您账户的分组，并受账户限额约束。",
    optional: "可选",
    new_key_secret: "您的新密钥",
    new_key_note: "请立即复制：它只显示这一次。",
    copy: "复制",
    no_keys: "还没有密钥。",
    time: "时间",
    key: "密钥",
    model: "模型",
    input: "输入",
    cached: "缓存读取",
    cache_write: "缓存写入",
    output: "输出",
    cost: "费用",
    request_id: "请求 ID",
    all_keys: "全部密钥",
    since: "开始",
    until: "结束",
    filter: "筛选",
    older: "更早",
    newest: "最新",
    download_csv: "下载 CSV",
    no_records: "没有符合条件的请求。",
    tokens_note: "Token 数为计费数量；费用为从余额中扣除的金额。",
    billing: "计费方式",
    per_token: "按 token",
    per_call: "按次",
    cached_input: "缓存输入",
    model_group: "模型组",
    groups: "分组",
    prices_in: "价格单位：",
    sentence_end: "。",
    pricing_note: "Token 价格为每 1,000,000 个 token 的价格；按次价格为每次请求的价格。分组倍率会按比例调整该分组密钥的价格。密钥所在分组无法使用的模型会在计费前被拒绝。",
    your_group_pays: "您的分组实际价格（已乘分组倍率）：",
    no_models: "尚未为任何模型定价。",
    redeem: "兑换",
    redeem_code: "兑换码",
    redeemed: "兑换成功，当前余额",
    top_up: "充值",
    amount: "金额",
    pay: "支付",
    topup_not_configured: "本网关未开通在线支付：请联系运营者充值，或在上方兑换兑换码。",
    topup_stripe: "通过 Stripe 银行卡支付；Stripe 确认付款后立即到账。",
    order: "订单",
    payment_pending: "谢谢！Stripe 确认付款后余额即到账（通常几秒内），请刷新页面查看。",
    ledger: "账单流水",
    kind: "类型",
    change: "变动",
    balance_after: "变动后余额",
    note: "备注",
    no_ledger: "还没有余额变动。",
    kind_topup: "充值",
    kind_redemption: "兑换",
    kind_usage: "消费",
    kind_adjustment: "调整",
    error: "错误",
    main_content: "跳到正文",
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn languages_are_chosen() {
        assert_eq!(Lang::from_accept_language("zh-CN,zh;q=0.9,en;q=0.8"), Lang::Zh);
        assert_eq!(Lang::from_accept_language("en-US,en;q=0.9,zh-CN;q=0.8"), Lang::En);
        assert_eq!(Lang::from_accept_language("fr-FR, zh;q=0.5"), Lang::Zh);
        assert_eq!(Lang::from_accept_language("de, fr"), Lang::En);
        assert_eq!(Lang::from_accept_language("zh;q=0, en;q=0.1"), Lang::En);
        let mut headers = HeaderMap::new();
        headers.insert(http::header::ACCEPT_LANGUAGE, http::HeaderValue::from_static("zh-TW"));
        assert_eq!(Lang::of_request(&headers, None), Lang::Zh);
        assert_eq!(Lang::of_request(&headers, Some("en")), Lang::En);
        headers.insert(http::header::COOKIE, http::HeaderValue::from_static("cr_lang=en"));
        assert_eq!(Lang::of_request(&headers, None), Lang::En);
        assert_eq!(Lang::of_request(&headers, Some("zh-CN")), Lang::Zh);
    }
}
