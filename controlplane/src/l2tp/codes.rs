//! Result and error codes of StopCCN and CDN (RFC 2661 §4.4.2).

use core::fmt;

use dataplane::wire::control::{Avp, ControlMessage};

/// A Result Code AVP's content: why a tunnel or session was stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultCode {
    /// The result: [`stop_ccn`] values in a StopCCN, [`cdn`] values in a CDN.
    pub result: u16,
    /// The error code ([`error`]), when the result is "general error" (2) or
    /// otherwise refers to one.
    pub error: Option<u16>,
    /// A human-readable explanation (may be empty).
    pub message: String,
}

impl ResultCode {
    /// A result with no error code and no message.
    pub fn new(result: u16) -> Self {
        ResultCode {
            result,
            error: None,
            message: String::new(),
        }
    }

    /// A result with an error code and a message.
    pub fn with_error(result: u16, error: u16, message: impl Into<String>) -> Self {
        ResultCode {
            result,
            error: Some(error),
            message: message.into(),
        }
    }

    /// A result with a message and no error code.
    pub fn with_message(result: u16, message: impl Into<String>) -> Self {
        ResultCode {
            result,
            error: None,
            message: message.into(),
        }
    }

    /// The Result Code AVP value. RFC 2661 §4.4.2: the message needs the
    /// error code field present, so a message without an error code gets
    /// error 0 ("no general error").
    pub fn to_avp(&self) -> Avp {
        let error = match (self.error, self.message.is_empty()) {
            (Some(e), _) => Some(e),
            (None, false) => Some(error::NONE),
            (None, true) => None,
        };
        Avp::ResultCode {
            result: self.result,
            error,
            message: self.message.as_bytes().to_vec(),
        }
    }

    /// The Result Code of a received message, if it has one.
    pub fn of(message: &ControlMessage) -> Option<Self> {
        message
            .result_code()
            .map(|(result, error, text)| ResultCode {
                result,
                error,
                message: String::from_utf8_lossy(text).into_owned(),
            })
    }
}

impl fmt::Display for ResultCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "result {}", self.result)?;
        if let Some(e) = self.error {
            write!(f, " error {e}")?;
        }
        if !self.message.is_empty() {
            write!(f, " ({})", self.message)?;
        }
        Ok(())
    }
}

/// StopCCN result codes (RFC 2661 §4.4.2).
pub mod stop_ccn {
    /// General request to clear control connection.
    pub const GENERAL_REQUEST: u16 = 1;
    /// General error; the error code says which.
    pub const GENERAL_ERROR: u16 = 2;
    /// Control channel already exists.
    pub const ALREADY_EXISTS: u16 = 3;
    /// Requester is not authorized to establish a control channel.
    pub const NOT_AUTHORIZED: u16 = 4;
    /// The protocol version of the requester is not supported; the error
    /// code carries the highest version supported.
    pub const UNSUPPORTED_VERSION: u16 = 5;
    /// Requester is being shut down.
    pub const SHUTTING_DOWN: u16 = 6;
    /// Finite state machine error.
    pub const FSM_ERROR: u16 = 7;
}

/// CDN result codes (RFC 2661 §4.4.2).
pub mod cdn {
    /// Call disconnected due to loss of carrier.
    pub const LOST_CARRIER: u16 = 1;
    /// Call disconnected for the reason indicated in the error code.
    pub const GENERAL_ERROR: u16 = 2;
    /// Call disconnected for administrative reasons.
    pub const ADMINISTRATIVE: u16 = 3;
    /// Call failed: no appropriate facilities available (temporary).
    pub const NO_FACILITIES_TEMPORARY: u16 = 4;
    /// Call failed: no appropriate facilities available (permanent).
    pub const NO_FACILITIES_PERMANENT: u16 = 5;
    /// Invalid destination.
    pub const INVALID_DESTINATION: u16 = 6;
    /// Call failed: no carrier detected.
    pub const NO_CARRIER: u16 = 7;
    /// Call failed: busy signal.
    pub const BUSY: u16 = 8;
    /// Call failed: no dial tone.
    pub const NO_DIAL_TONE: u16 = 9;
    /// Call was not established within the time allotted by the LAC.
    pub const TIMEOUT: u16 = 10;
    /// Call was connected but no appropriate framing was detected.
    pub const NO_FRAMING: u16 = 11;
}

/// General error codes (RFC 2661 §4.4.2), carried with result 2.
pub mod error {
    /// No general error.
    pub const NONE: u16 = 0;
    /// No control connection exists yet for this LAC-LNS pair.
    pub const NO_CONTROL_CONNECTION: u16 = 1;
    /// Length is wrong.
    pub const BAD_LENGTH: u16 = 2;
    /// One of the field values was out of range or a reserved field was
    /// non-zero.
    pub const OUT_OF_RANGE: u16 = 3;
    /// Insufficient resources to handle this operation now.
    pub const INSUFFICIENT_RESOURCES: u16 = 4;
    /// The Session ID is invalid in this context.
    pub const INVALID_SESSION_ID: u16 = 5;
    /// A generic vendor-specific error occurred.
    pub const VENDOR_SPECIFIC: u16 = 6;
    /// Try another.
    pub const TRY_ANOTHER: u16 = 7;
    /// Session or tunnel was shut down due to receipt of an unknown AVP with
    /// the M bit set.
    pub const UNKNOWN_MANDATORY_AVP: u16 = 8;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_without_an_error_code_gets_error_zero() {
        let avp = ResultCode::with_message(stop_ccn::GENERAL_REQUEST, "bye").to_avp();
        assert_eq!(
            avp,
            Avp::ResultCode {
                result: 1,
                error: Some(0),
                message: b"bye".to_vec()
            }
        );
        assert_eq!(
            ResultCode::new(cdn::ADMINISTRATIVE).to_avp(),
            Avp::ResultCode {
                result: 3,
                error: None,
                message: Vec::new()
            }
        );
    }

    #[test]
    fn display_names_every_part() {
        let r = ResultCode::with_error(2, 8, "unknown AVP 99");
        assert_eq!(r.to_string(), "result 2 error 8 (unknown AVP 99)");
    }
}
