//! `routerctl usage --quarantined`: usage reports the control plane refused as invalid and set
//! aside, with the reason, so that they never blocked the reports behind them.
use router_proto::pb;
use serde::Serialize;

use crate::{
    client::Admin,
    error::Error,
    output::{self, Output, Record},
};

/// Lists quarantined reports, newest first.
pub async fn run(limit: u32, admin: &mut Admin, out: &mut Output) -> Result<(), Error> {
    let request = pb::ListQuarantinedUsageRequest { limit: Some(limit) };
    let reports = admin.list_quarantined_usage(request).await?.into_inner().reports;
    let views: Vec<QuarantineView> = reports.iter().map(QuarantineView::new).collect();
    out.records(&views)
}

/// One quarantined report for display: its fields as the data plane sent them.
#[derive(Debug, Serialize)]
pub struct QuarantineView {
    id: i64,
    received_at: String,
    node_id: String,
    reason: String,
    request_id: String,
    key_id: i64,
    model: String,
    channel: String,
    input_tokens: i64,
    cached_input_tokens: i64,
    cache_write_tokens: i64,
    output_tokens: i64,
    cost: String,
    status: String,
    created_at: String,
}

impl QuarantineView {
    /// The display form of a proto quarantined report.
    pub fn new(quarantined: &pb::QuarantinedReport) -> QuarantineView {
        let report = quarantined.report.clone().unwrap_or_default();
        QuarantineView {
            id: quarantined.id,
            received_at: output::time(quarantined.received_at_unix_micros),
            node_id: quarantined.node_id.clone(),
            reason: quarantined.reason.clone(),
            request_id: report.request_id,
            key_id: report.key_id,
            model: report.model,
            channel: report.channel,
            input_tokens: report.input_tokens,
            cached_input_tokens: report.cached_input_tokens,
            cache_write_tokens: report.cache_write_tokens,
            output_tokens: report.output_tokens,
            cost: output::money(report.cost_nanos),
            status: report.status,
            created_at: output::time(report.created_at_unix_micros),
        }
    }
}

impl Record for QuarantineView {
    const COLUMNS: &'static [&'static str] =
        &["received_at", "node_id", "request_id", "key_id", "model", "output_tokens", "cost", "reason"];

    fn fields(&self) -> Vec<(&'static str, String)> {
        vec![
            ("id", self.id.to_string()),
            ("received_at", self.received_at.clone()),
            ("node_id", self.node_id.clone()),
            ("reason", self.reason.clone()),
            ("request_id", self.request_id.clone()),
            ("key_id", self.key_id.to_string()),
            ("model", self.model.clone()),
            ("channel", self.channel.clone()),
            ("input_tokens", self.input_tokens.to_string()),
            ("cached_input_tokens", self.cached_input_tokens.to_string()),
            ("cache_write_tokens", self.cache_write_tokens.to_string()),
            ("output_tokens", self.output_tokens.to_string()),
            ("cost", self.cost.clone()),
            ("status", self.status.clone()),
            ("created_at", self.created_at.clone()),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quarantined_reports_render_as_json() {
        let quarantined = pb::QuarantinedReport {
            id: 7,
            reason: "report \"r1\": output_tokens 4500000000000000 is more than any request can use".into(),
            node_id: "dp-1".into(),
            received_at_unix_micros: 0,
            report: Some(pb::UsageReport {
                request_id: "r1".into(),
                key_id: 3,
                output_tokens: 4_500_000_000_000_000,
                cost_nanos: 1_500_000_000,
                ..pb::UsageReport::default()
            }),
        };
        let json = serde_json::to_value(QuarantineView::new(&quarantined)).expect("views serialize");
        assert_eq!(json["id"], 7);
        assert_eq!(json["request_id"], "r1");
        assert_eq!(json["output_tokens"], 4_500_000_000_000_000_i64);
        assert_eq!(json["cost"], "1.5");
        assert!(json["reason"].as_str().is_some_and(|r| r.contains("more than any request")));
    }
}
