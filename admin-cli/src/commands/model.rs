//! `routerctl model …`: models and their prices.
use clap::{ArgGroup, Args, Subcommand};
use router_proto::pb;
use serde::Serialize;

use super::price::{PRICE_COLUMNS, PriceArgs, PriceView};
use crate::{
    args,
    client::Admin,
    error::Error,
    output::{Output, Record, or_unset},
};

/// Model subcommands.
#[derive(Debug, Subcommand)]
pub enum ModelCommand {
    /// Create a model or replace its price (per 1M tokens, or per call).
    Set(SetArgs),
    /// List models and their prices.
    List,
    /// Delete a model.
    Delete {
        /// The model's name.
        #[arg(value_parser = args::name)]
        name: String,
    },
    /// Serve and bill a name (or, ending in `*`, every name with that prefix) as a priced
    /// model: `model alias NAME TARGET`, `model alias list`, `model alias delete NAME`.
    Alias(super::alias::AliasArgs),
}

/// Flags of `model set`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("billing").required(true).args(["input_price", "per_call"])))]
pub struct SetArgs {
    /// The model's name, as clients send it.
    #[arg(value_parser = args::name)]
    pub name: String,
    /// The price, per 1M tokens or per call.
    #[command(flatten)]
    pub price: PriceArgs,
    /// The model's output cap, used to estimate a request's cost when it sets no `max_tokens`.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(i64).range(1..))]
    pub max_output_tokens: Option<i64>,
}

impl SetArgs {
    fn into_request(self) -> pb::SetModelRequest {
        pb::SetModelRequest {
            price: self.price.to_proto(),
            name: self.name,
            max_output_tokens: self.max_output_tokens,
        }
    }
}

/// Runs a model subcommand.
pub async fn run(command: ModelCommand, admin: &mut Admin, out: &mut Output) -> Result<(), Error> {
    match command {
        ModelCommand::Set(set) => {
            let model = admin.set_model(set.into_request()).await?.into_inner();
            out.record(&ModelView::new(&model))
        }
        ModelCommand::List => {
            let models = admin.list_models(pb::ListModelsRequest {}).await?.into_inner().models;
            let views: Vec<ModelView> = models.iter().map(ModelView::new).collect();
            out.records(&views)
        }
        ModelCommand::Delete { name } => {
            admin.delete_model(pb::NameRequest { name: name.clone() }).await?;
            let json = serde_json::json!({ "deleted": name });
            out.either(&json, &format!("deleted model {name}"))
        }
        ModelCommand::Alias(alias) => super::alias::run(alias, admin, out).await,
    }
}

/// A model for display: its own price (null when priced by its model group only).
#[derive(Debug, Serialize)]
pub struct ModelView {
    name: String,
    #[serde(flatten)]
    price: PriceView,
    max_output_tokens: Option<i64>,
    model_group: Option<String>,
}

impl ModelView {
    /// The display form of a proto model.
    pub fn new(model: &pb::Model) -> ModelView {
        ModelView {
            name: model.name.clone(),
            price: PriceView::new(model.price.as_ref()),
            max_output_tokens: model.max_output_tokens,
            model_group: model.model_group.clone(),
        }
    }
}

impl Record for ModelView {
    const COLUMNS: &'static [&'static str] = &[
        "name",
        PRICE_COLUMNS[0],
        PRICE_COLUMNS[1],
        PRICE_COLUMNS[2],
        PRICE_COLUMNS[3],
        PRICE_COLUMNS[4],
        PRICE_COLUMNS[5],
        "max_output_tokens",
        "model_group",
    ];

    fn fields(&self) -> Vec<(&'static str, String)> {
        let mut fields = vec![("name", self.name.clone())];
        fields.extend(self.price.fields());
        fields.push(("max_output_tokens", or_unset(self.max_output_tokens.as_ref())));
        fields.push(("model_group", or_unset(self.model_group.as_ref())));
        fields
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn parse(line: &[&str]) -> Result<ModelCommand, clap::Error> {
        let cli = Cli::try_parse_from(std::iter::once("routerctl").chain(line.iter().copied()))?;
        match cli.command {
            Command::Model(command) => Ok(command),
            other => panic!("not a model command: {other:?}"),
        }
    }

    fn set_request(line: &[&str]) -> pb::SetModelRequest {
        match parse(line) {
            Ok(ModelCommand::Set(set)) => set.into_request(),
            other => panic!("not a model set: {other:?}"),
        }
    }

    #[test]
    fn set_takes_token_prices_or_a_per_call_price() {
        let request =
            set_request(&["model", "set", "gpt-4o", "--input-price", "2.5", "--output-price", "10"]);
        let Some(pb::price::Billing::Tokens(tokens)) = request.price.and_then(|price| price.billing) else {
            panic!("not per token")
        };
        assert_eq!((tokens.input_nanos, tokens.output_nanos), (2_500_000_000, 10_000_000_000));
        let request = set_request(&["model", "set", "dall-e", "--per-call", "0.04"]);
        assert_eq!(
            request.price.and_then(|price| price.billing),
            Some(pb::price::Billing::PerCallNanos(40_000_000))
        );
    }

    #[test]
    fn set_refuses_incomplete_or_mixed_prices() {
        for line in [
            &["model", "set", "m"][..],
            &["model", "set", "m", "--input-price", "1"],
            &["model", "set", "m", "--output-price", "1"],
            &["model", "set", "m", "--per-call", "1", "--input-price", "1", "--output-price", "1"],
            &["model", "set", "m", "--per-call", "1", "--cached-input-price", "1"],
            &["model", "set", "m", "--input-price", "-1", "--output-price", "1"],
            &["model", "set", "m", "--input-price", "0.0000000001", "--output-price", "1"],
        ] {
            assert!(parse(line).is_err(), "{line:?}");
        }
    }

    #[test]
    fn models_render_as_json() {
        let model = pb::Model {
            id: 1,
            name: "gpt-4o".into(),
            price: Some(pb::Price {
                billing: Some(pb::price::Billing::Tokens(pb::TokenPrice {
                    input_nanos: 2_500_000_000,
                    output_nanos: 10_000_000_000,
                    cached_input_nanos: Some(1_250_000_000),
                    cache_write_nanos: None,
                })),
            }),
            max_output_tokens: Some(16_384),
            model_group: None,
        };
        assert_eq!(
            serde_json::to_value(ModelView::new(&model)).expect("views serialize"),
            serde_json::json!({
                "name": "gpt-4o", "billing": "tokens", "input_price": "2.5",
                "output_price": "10", "cached_input_price": "1.25", "cache_write_price": null,
                "per_call_price": null, "max_output_tokens": 16384, "model_group": null,
            })
        );
    }
}
