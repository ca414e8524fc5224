//! `routerctl import new-api|one-api --from URL`: switch from another gateway in one step.
use clap::Args;
use router_proto::pb;
use serde::Serialize;

use crate::{
    client::Admin,
    error::Error,
    import::{Flavor, map, read},
    output::Output,
};

/// Flags of `import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Which gateway the database belongs to.
    #[arg(value_enum)]
    pub from_kind: Flavor,
    /// Their database: sqlite:///path/one-api.db, postgres://…, or mysql://user:pass@host/db.
    #[arg(long = "from", value_name = "URL")]
    pub url: String,
    /// Print what would be created and every value that cannot be mapped; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Import what can be mapped even though some values cannot.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Serialize)]
struct Report {
    changes: Vec<ChangeView>,
    unmappable: Vec<String>,
    dry_run: bool,
}

#[derive(Debug, Serialize)]
struct ChangeView {
    kind: String,
    name: String,
    action: String,
}

fn now_seconds() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Runs `import`.
pub async fn run(args: ImportArgs, admin: &mut Admin, out: &mut Output) -> Result<(), Error> {
    let data = read::read(args.from_kind, &args.url).await?;
    let mapped = map::map(&data, now_seconds());
    if !mapped.unmappable.is_empty() && !args.force && !args.dry_run {
        let list: Vec<String> = mapped.unmappable.iter().map(|p| format!("  cannot map: {p}")).collect();
        return Err(Error::Invalid(format!(
            "{} value(s) cannot be mapped; nothing was written (fix them at the source, see them with \
             --dry-run, or import the rest with --force):\n{}",
            list.len(),
            list.join("\n")
        )));
    }
    let dry_run = args.dry_run;
    let mut request = mapped.request;
    request.dry_run = dry_run;
    let answer: pb::ApplySetupResponse = admin.import(request).await?.into_inner();
    let report = Report {
        changes: answer
            .changes
            .into_iter()
            .map(|c| ChangeView { kind: c.kind, name: c.name, action: c.action })
            .collect(),
        unmappable: mapped.unmappable,
        dry_run,
    };
    if out.is_json() {
        out.json(&report)?;
    } else {
        let mut text = String::new();
        for change in report.changes.iter().filter(|c| c.action != "unchanged") {
            let verb = if dry_run { format!("would {}", change.action) } else { change.action.clone() };
            text.push_str(&format!("{verb} {} {}\n", change.kind, change.name));
        }
        let created = report.changes.iter().filter(|c| c.action == "create").count();
        let unchanged = report.changes.iter().filter(|c| c.action == "unchanged").count();
        text.push_str(&format!(
            "{created} to create, {unchanged} already here{}\n",
            if dry_run { " (nothing was written)" } else { "" }
        ));
        for problem in &report.unmappable {
            text.push_str(&format!("cannot map: {problem}\n"));
        }
        out.text(&text)?;
    }
    Ok(())
}
