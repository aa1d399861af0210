//! Per-packet cost of the wire codecs (criterion).
fn main() {}
