//! One module per subcommand.

pub mod enrich;
pub mod serve;
