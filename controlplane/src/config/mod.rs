//! The daemons' TOML configuration files (being written).
