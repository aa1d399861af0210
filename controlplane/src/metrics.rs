//! Prometheus metrics of the daemons (being written).
