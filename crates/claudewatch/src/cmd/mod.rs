//! One module per subcommand, and what they share.

pub mod enrich;
pub mod loadgen;
pub mod migrate;
pub mod report;
pub mod serve;

use anyhow::Context;
use claudewatch_enrich::PriceTable;

/// The price table from `path`, or the built-in one.
pub fn load_prices(path: Option<&std::path::Path>) -> anyhow::Result<PriceTable> {
    let Some(path) = path else {
        return Ok(PriceTable::default_table());
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading price table {}", path.display()))?;
    PriceTable::from_toml(&text).with_context(|| format!("price table {}", path.display()))
}
