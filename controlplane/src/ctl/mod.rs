//! The daemons' local control socket and its protocol (being written).
