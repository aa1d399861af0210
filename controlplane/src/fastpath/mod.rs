//! The bridge between the control plane and the fast-path workers (being written).
