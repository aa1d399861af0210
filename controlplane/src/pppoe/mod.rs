//! PPPoE discovery (RFC 2516 §5): the LAC's server and the subscriber's client (being written).
