//! `routerctl account …`: accounts hold the balance that keys spend.
use clap::{ArgGroup, Args, Subcommand};
use router_proto::{Money, pb};
use serde::Serialize;

use super::limits::{PeriodArgs, PeriodUpdateArgs, RateArgs, RateUpdateArgs, RateView};
use crate::{
    args::{self, Clearable, split_clearable},
    client::Admin,
    error::Error,
    output::{self, Output, Record, or_unset},
};

/// Account subcommands.
#[derive(Debug, Subcommand)]
pub enum AccountCommand {
    /// Add an account.
    Add(AddArgs),
    /// List accounts with their balances.
    List,
    /// Show one account.
    Show {
        /// The account's name.
        #[arg(value_parser = args::name)]
        name: String,
    },
    /// Change an account; what is not given stays as it is.
    Update(UpdateArgs),
    /// Set the password the account signs in to the console with (ends its sessions).
    SetPassword(SetPasswordArgs),
}

/// Flags of `account set-password`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("source").required(true)))]
pub struct SetPasswordArgs {
    /// The account.
    #[arg(value_parser = args::name)]
    pub name: String,
    /// Read the password from standard input: one line, its trailing newline dropped.
    #[arg(long, group = "source")]
    pub password_stdin: bool,
    /// Read the password from the first line of this file.
    #[arg(long, value_name = "F", group = "source")]
    pub password_file: Option<std::path::PathBuf>,
}

impl SetPasswordArgs {
    /// The password, read from where the flags say.
    fn password(&self) -> Result<String, Error> {
        let text = match &self.password_file {
            Some(path) => std::fs::read_to_string(path)
                .map_err(|e| Error::Invalid(format!("cannot read {}: {e}", path.display())))?,
            None => {
                let mut line = String::new();
                std::io::stdin()
                    .read_line(&mut line)
                    .map_err(|e| Error::Invalid(format!("cannot read the password from stdin: {e}")))?;
                line
            }
        };
        first_line(&text)
    }
}

/// The first line of `text` without its line ending; an empty one is refused.
fn first_line(text: &str) -> Result<String, Error> {
    let line = text.split('\n').next().unwrap_or_default();
    let line = line.strip_suffix('\r').unwrap_or(line);
    if line.is_empty() {
        return Err(Error::Invalid("the password is empty".to_owned()));
    }
    Ok(line.to_owned())
}

/// Flags of `account add`.
#[derive(Debug, Args)]
pub struct AddArgs {
    /// The account's name.
    #[arg(value_parser = args::name)]
    pub name: String,
    /// The account's token group (default: `default`).
    #[arg(long, value_name = "G", value_parser = args::name)]
    pub group: Option<String>,
    /// An opening balance.
    #[arg(long, value_name = "X", value_parser = args::money)]
    pub balance: Option<Money>,
    /// The most the account may spend in one UTC day.
    #[arg(long, value_name = "X", value_parser = args::money)]
    pub daily_limit: Option<Money>,
    /// The email the account signs in to the console with (unique, case-insensitively).
    #[arg(long, value_name = "E")]
    pub email: Option<String>,
    /// Rate limits shared by all the account's keys.
    #[command(flatten)]
    pub rates: RateArgs,
    /// Weekly and monthly spend limits.
    #[command(flatten)]
    pub periods: PeriodArgs,
}

impl AddArgs {
    fn into_request(self) -> pb::AddAccountRequest {
        let (rpm, tpm, max_concurrent) = self.rates.wire();
        let (weekly, monthly) = self.periods.wire();
        pb::AddAccountRequest {
            name: self.name,
            group: self.group,
            balance_nanos: self.balance.map(Money::nanos),
            daily_limit_nanos: self.daily_limit.map(Money::nanos),
            email: self.email,
            rpm,
            tpm,
            max_concurrent,
            weekly_limit_nanos: weekly,
            monthly_limit_nanos: monthly,
        }
    }
}

/// Flags of `account update`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("changes").required(true).multiple(true)))]
pub struct UpdateArgs {
    /// The account to change.
    #[arg(value_parser = args::name)]
    pub name: String,
    /// The account's token group.
    #[arg(long, value_name = "G", group = "changes", value_parser = args::name)]
    pub group: Option<String>,
    /// The most the account may spend in one UTC day; `none` removes the limit.
    #[arg(long, value_name = "X", group = "changes", value_parser = args::clearable_money)]
    pub daily_limit: Option<Clearable<Money>>,
    /// The console sign-in email; `none` removes it.
    #[arg(long, value_name = "E", group = "changes", value_parser = clearable_text)]
    pub email: Option<Clearable<String>>,
    /// `true` stops the account signing in to the console and ends its sessions.
    #[arg(long, value_name = "true|false", group = "changes", action = clap::ArgAction::Set)]
    pub disabled: Option<bool>,
    /// Rate limits shared by all the account's keys.
    #[command(flatten)]
    pub rates: RateUpdateArgs,
    /// Weekly and monthly spend limits.
    #[command(flatten)]
    pub periods: PeriodUpdateArgs,
}

fn clearable_text(input: &str) -> Result<Clearable<String>, String> {
    if input == args::NONE { Ok(Clearable::Clear) } else { Ok(Clearable::Set(input.to_owned())) }
}

impl UpdateArgs {
    fn into_request(self) -> pb::UpdateAccountRequest {
        let (daily_limit, clear_daily_limit) = split_clearable(self.daily_limit);
        let (email, clear_email) = split_clearable(self.email);
        let (rpm, tpm, max_concurrent) = self.rates.wire();
        let (weekly, monthly) = self.periods.wire();
        pb::UpdateAccountRequest {
            name: self.name,
            group: self.group,
            daily_limit_nanos: daily_limit.map(Money::nanos),
            clear_daily_limit,
            email,
            clear_email,
            disabled: self.disabled,
            rpm,
            tpm,
            max_concurrent,
            weekly_limit_nanos: weekly,
            monthly_limit_nanos: monthly,
        }
    }
}

/// Runs an account subcommand.
pub async fn run(command: AccountCommand, admin: &mut Admin, out: &mut Output) -> Result<(), Error> {
    let account = match command {
        AccountCommand::Add(add) => admin.add_account(add.into_request()).await?,
        AccountCommand::Show { name } => admin.get_account(pb::NameRequest { name }).await?,
        AccountCommand::Update(update) => admin.update_account(update.into_request()).await?,
        AccountCommand::SetPassword(set) => {
            let password = set.password()?;
            admin.set_account_password(pb::SetAccountPasswordRequest { name: set.name, password }).await?
        }
        AccountCommand::List => {
            let request = pb::ListAccountsRequest {};
            let accounts = admin.list_accounts(request).await?.into_inner().accounts;
            let views: Vec<AccountView> = accounts.iter().map(AccountView::new).collect();
            return out.records(&views);
        }
    };
    out.record(&AccountView::new(account.get_ref()))
}

/// An account for display.
#[derive(Debug, Serialize)]
pub struct AccountView {
    id: i64,
    name: String,
    group: String,
    balance: String,
    reserved: String,
    daily_limit: Option<String>,
    spent_today: String,
    weekly_limit: Option<String>,
    spent_this_week: String,
    monthly_limit: Option<String>,
    spent_this_month: String,
    #[serde(flatten)]
    rates: RateView,
    created_at: String,
    email: Option<String>,
    disabled: bool,
    has_password: bool,
}

impl AccountView {
    /// The display form of a proto account.
    pub fn new(account: &pb::Account) -> AccountView {
        AccountView {
            id: account.id,
            name: account.name.clone(),
            group: account.group.clone(),
            balance: output::money(account.balance_nanos),
            reserved: output::money(account.reserved_nanos),
            daily_limit: output::opt_money(account.daily_limit_nanos),
            spent_today: output::money(account.spent_today_nanos),
            weekly_limit: output::opt_money(account.weekly_limit_nanos.filter(|l| *l > 0)),
            spent_this_week: output::money(account.spent_this_week_nanos),
            monthly_limit: output::opt_money(account.monthly_limit_nanos.filter(|l| *l > 0)),
            spent_this_month: output::money(account.spent_this_month_nanos),
            rates: RateView::new(account.rpm, account.tpm, account.max_concurrent),
            created_at: output::time(account.created_at_unix_micros),
            email: account.email.clone(),
            disabled: account.disabled,
            has_password: account.has_password,
        }
    }
}

impl Record for AccountView {
    const COLUMNS: &'static [&'static str] =
        &["id", "name", "group", "balance", "reserved", "daily_limit", "spent_today", "rpm", "tpm", "email"];

    fn fields(&self) -> Vec<(&'static str, String)> {
        let mut fields = vec![
            ("id", self.id.to_string()),
            ("name", self.name.clone()),
            ("group", self.group.clone()),
            ("balance", self.balance.clone()),
            ("reserved", self.reserved.clone()),
            ("daily_limit", or_unset(self.daily_limit.as_ref())),
            ("spent_today", self.spent_today.clone()),
            ("weekly_limit", or_unset(self.weekly_limit.as_ref())),
            ("spent_this_week", self.spent_this_week.clone()),
            ("monthly_limit", or_unset(self.monthly_limit.as_ref())),
            ("spent_this_month", self.spent_this_month.clone()),
        ];
        fields.extend(self.rates.fields());
        fields.push(("created_at", self.created_at.clone()));
        fields.extend([
            ("email", or_unset(self.email.as_ref())),
            ("disabled", self.disabled.to_string()),
            ("password", if self.has_password { "set" } else { "-" }.to_owned()),
        ]);
        fields
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn parse(line: &[&str]) -> Result<AccountCommand, clap::Error> {
        let cli = Cli::try_parse_from(std::iter::once("routerctl").chain(line.iter().copied()))?;
        match cli.command {
            Command::Account(command) => Ok(command),
            other => panic!("not an account command: {other:?}"),
        }
    }

    #[test]
    fn daily_limit_none_clears_it() {
        let Ok(AccountCommand::Update(update)) =
            parse(&["account", "update", "bob", "--daily-limit", "none"])
        else {
            panic!("not update")
        };
        let request = update.into_request();
        assert!(request.clear_daily_limit && request.daily_limit_nanos.is_none());
        let Ok(AccountCommand::Add(add)) =
            parse(&["account", "add", "bob", "--balance", "10", "--daily-limit", "0.5"])
        else {
            panic!("not add")
        };
        let request = add.into_request();
        assert_eq!(request.balance_nanos, Some(10_000_000_000));
        assert_eq!(request.daily_limit_nanos, Some(500_000_000));
        assert!(parse(&["account", "add", "bob", "--balance", "-1"]).is_err());
    }

    #[test]
    fn accounts_render_as_json() {
        let account = pb::Account {
            id: 7,
            name: "bob".into(),
            group: "default".into(),
            balance_nanos: 9_999_986_000,
            reserved_nanos: 0,
            daily_limit_nanos: None,
            spent_today_nanos: 14_000,
            created_at_unix_micros: 1_795_759_982_123_456,
            email: Some("bob@example.com".into()),
            disabled: false,
            has_password: true,
            rpm: Some(60),
            monthly_limit_nanos: Some(5_000_000_000),
            spent_this_month_nanos: 14_000,
            ..pb::Account::default()
        };
        assert_eq!(
            serde_json::to_value(AccountView::new(&account)).expect("views serialize"),
            serde_json::json!({
                "id": 7, "name": "bob", "group": "default", "balance": "9.999986",
                "reserved": "0", "daily_limit": null, "spent_today": "0.000014",
                "weekly_limit": null, "spent_this_week": "0", "monthly_limit": "5",
                "spent_this_month": "0.000014", "rpm": 60, "tpm": null, "max_concurrent": null,
                "created_at": "2026-11-27T06:13:02.123456Z",
                "email": "bob@example.com",
                "disabled": false, "has_password": true,
            })
        );
    }

    #[test]
    fn passwords_are_one_line_without_its_newline() {
        assert_eq!(first_line("s3cret pass\n").ok().as_deref(), Some("s3cret pass"));
        assert_eq!(first_line("s3cret pass\r\nsecond").ok().as_deref(), Some("s3cret pass"));
        assert_eq!(first_line(" spaced  ").ok().as_deref(), Some(" spaced  "));
        assert!(first_line("\n").is_err());
        assert!(first_line("").is_err());
        assert!(parse(&["account", "set-password", "bob"]).is_err(), "a source is required");
        assert!(
            parse(&["account", "set-password", "bob", "--password-stdin", "--password-file", "f"]).is_err()
        );
        let Ok(AccountCommand::Update(update)) =
            parse(&["account", "update", "bob", "--disabled", "true", "--email", "none"])
        else {
            panic!("not update")
        };
        let request = update.into_request();
        assert_eq!(request.disabled, Some(true));
        assert!(request.clear_email && request.email.is_none());
        assert!(parse(&["account", "update", "bob", "--disabled", "maybe"]).is_err());
    }
}
