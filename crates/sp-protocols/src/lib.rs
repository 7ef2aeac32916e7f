//! # sp-protocols: the scalability protocols of spstack
//!
//! Each protocol comes twice: a raw form (a [`sp_core::Routing`]: it only
//! routes and parses headers, with no I/O) and a cooked form that is a
//! message layer over the raw socket ([`req::Req0`], [`rep::Rep0`],
//! [`plain::Plain`]), written against the same public seam
//! ([`sp_core::RawSocket`]) a protocol from another crate uses.
//!
//! ```
//! use sp_core::{ProtocolId, Routing};
//! assert_eq!(sp_protocols::raw::Req0Raw.spec().peer, ProtocolId::REP0);
//! ```

// a message handed back in an Err is the point (no allocation)
#![allow(clippy::result_large_err)]

pub mod bus;
mod idmap;
pub mod pair1;
pub mod plain;
pub mod pubsub;
pub mod raw;
pub mod rep;
pub mod req;
pub mod survey;

pub use bus::{reflect, Bus0Raw};
pub use pair1::{Pair1, Pair1Raw};
pub use plain::Plain;
pub use pubsub::{Pub0Lossless, Pub0Raw, Sub0, Sub0Raw, SubControl};
pub use rep::Rep0;
pub use req::{Req0, ReqState};
pub use survey::{Respondent0, Respondent0Raw, Surveyor0, Surveyor0Raw, SurveyorControl};
