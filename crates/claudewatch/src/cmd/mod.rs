//! One module per subcommand.

pub mod enrich;
