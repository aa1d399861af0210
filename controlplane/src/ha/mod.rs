//! The HA extension (DESIGN.md §3): session state, LNS-to-LNS offload, switchover (being written).
