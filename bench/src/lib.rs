//! Benchmarks and, as later issues land, the `l2bench` subscriber emulator.
