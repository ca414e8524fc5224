//! The public price table: every priced model, its price, and the groups that reach it.
use std::collections::BTreeMap;

use router_proto::{Multiplier, Tariff};

use super::{
    groups::{self, Group},
    models::{self, Model, ModelGroup},
};
use crate::{db::Db, error::StoreResult};

/// One row of the price table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriceEntry {
    /// Model name.
    pub model: String,
    /// The price in force: the model's own, else its model group's.
    pub tariff: Tariff,
    /// The model group it belongs to.
    pub model_group: Option<String>,
    /// Groups that reach the model, with their multipliers.
    pub groups: Vec<(String, Multiplier)>,
}

/// Builds the table from the stored entities.
pub fn build(models: &[Model], model_groups: &[ModelGroup], groups: &[Group]) -> Vec<PriceEntry> {
    let mut group_of: BTreeMap<String, &ModelGroup> = BTreeMap::new();
    for group in model_groups {
        for member in group.members() {
            group_of.insert(member, group);
        }
    }
    let mut priced: BTreeMap<String, Tariff> = BTreeMap::new();
    for group in model_groups {
        if let Some(tariff) = group.tariff() {
            for member in group.members() {
                priced.insert(member, tariff);
            }
        }
    }
    // A model's own price wins over its model group's.
    for model in models {
        if let Some(tariff) = model.tariff() {
            priced.insert(model.name.clone(), tariff);
        }
    }
    priced
        .into_iter()
        .map(|(model, tariff)| {
            let model_group = group_of.get(&model).map(|g| g.name.clone());
            let groups = groups
                .iter()
                .filter(|g| g.reaches(&model, model_group.as_deref()))
                .map(|g| {
                    (g.name.clone(), Multiplier::from_micros(g.multiplier_micros).unwrap_or(Multiplier::ONE))
                })
                .collect();
            PriceEntry { model, tariff, model_group, groups }
        })
        .collect()
}

/// The current price table.
pub async fn table(db: &Db) -> StoreResult<Vec<PriceEntry>> {
    let models = models::list(db).await?;
    let model_groups = models::list_groups(db).await?;
    let groups = groups::list(db).await?;
    Ok(build(&models, &model_groups, &groups))
}
