//! The LAC node: PPPoE subscribers to L2TP calls on a chosen LNS (being written).
