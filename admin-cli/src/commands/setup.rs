//! `routerctl apply` and `routerctl export`: the deployment's setup as a TOML file.
use std::io::Read;

use clap::Args;
use router_proto::pb;
use serde::Serialize;
use tonic::Code;

use crate::{
    client::Admin,
    error::Error,
    output::Output,
    setup::{self, Parsed},
};

/// Flags of `apply`.
#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// The setup file (TOML; `-` reads standard input).
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: String,
    /// Print what would change, change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Also delete channels, models, model groups and groups the file does not name.
    #[arg(long)]
    pub prune: bool,
}

/// Flags of `export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Write channels' upstream keys instead of `env:` references.
    #[arg(long)]
    pub with_secrets: bool,
}

/// One line of the apply report.
#[derive(Debug, Serialize)]
struct ChangeView {
    kind: String,
    name: String,
    action: String,
}

fn read(file: &str) -> Result<String, Error> {
    let mut text = String::new();
    let read = if file == "-" {
        std::io::stdin().read_to_string(&mut text).map(drop)
    } else {
        std::fs::read_to_string(file).map(|t| text = t)
    };
    read.map_err(|e| Error::Invalid(format!("cannot read {file}: {e}")))?;
    Ok(text)
}

/// Whether a refusal is about the request's content (and so names an item of the file).
fn about_an_item(code: Code) -> bool {
    matches!(code, Code::InvalidArgument | Code::NotFound | Code::FailedPrecondition | Code::AlreadyExists)
}

/// Runs `apply`.
pub async fn apply(args: ApplyArgs, admin: &mut Admin, out: &mut Output) -> Result<(), Error> {
    let parsed = Parsed::parse(&args.file, read(&args.file)?)?;
    let request =
        pb::ApplySetupRequest { setup: Some(parsed.to_proto()?), dry_run: args.dry_run, prune: args.prune };
    // The error names the item; its line is only known here.
    let answer = match admin.apply_setup(request).await {
        Ok(answer) => answer.into_inner(),
        Err(status) if about_an_item(status.code()) => {
            return Err(parsed.locate(Error::Server(status.message().to_owned())));
        }
        Err(status) => return Err(status.into()),
    };
    let changes: Vec<ChangeView> = answer
        .changes
        .into_iter()
        .map(|c| ChangeView { kind: c.kind, name: c.name, action: c.action })
        .collect();
    if out.is_json() {
        return out.json(&changes);
    }
    let mut text = String::new();
    let count = |action: &str| changes.iter().filter(|c| c.action == action).count();
    for change in changes.iter().filter(|c| c.action != "unchanged") {
        text.push_str(&format!("{:<7} {} {}\n", change.action, change.kind, change.name));
    }
    text.push_str(&format!(
        "{} created, {} updated, {} deleted, {} unchanged{}\n",
        count("create"),
        count("update"),
        count("delete"),
        count("unchanged"),
        if args.dry_run { " (dry run: nothing was changed)" } else { "" }
    ));
    out.text(&text)
}

/// Runs `export`: the TOML file on stdout (with `--json`, the same setup as one JSON value).
pub async fn export(args: ExportArgs, admin: &mut Admin, out: &mut Output) -> Result<(), Error> {
    let request = pb::ExportSetupRequest { with_secrets: args.with_secrets };
    let current = admin.export_setup(request).await?.into_inner();
    let file = setup::from_proto(current, args.with_secrets);
    if out.is_json() {
        return out.json(&file);
    }
    out.text(&setup::render(&file)?)
}
